"""Receipts on LiteSVM (the real runtime with its Ed25519 precompile and Memo program): a
published receipt is one the chain checked, a forged one is refused by the runtime, the
packer's batches fit, publication survives a killed sender, and the attestor key chain
published as Memos verifies (and a break in it is found)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from settlement_fixtures import NOS, ChainMarket, open_chain_market
from solders.keypair import Keypair
from test_settlement_outbox import Killed, _crashing_sender

from nosgrid.core import receipts as layout
from nosgrid.core.attestor import parse_memo, verify_chain
from nosgrid.core.errors import BrokenAttestorChain
from nosgrid.settlement import receipts as receipt_tx
from nosgrid.settlement import spl
from nosgrid.settlement.errors import TransactionFailed
from nosgrid.settlement.litesvm_chain import LiteSVMChain
from nosgrid.settlement.sender import Sender
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxRow, OutboxStatus


@pytest_asyncio.fixture
async def market(tmp_path: Path) -> AsyncIterator[ChainMarket]:
    m = await open_chain_market(tmp_path)
    m.backend.publish_receipts = True  # as a coordinator's open_backend does
    await m.fund(m.alice, approve=50 * NOS)
    yield m
    await m.close()


def _rows(m: ChainMarket, kind: OutboxKind) -> list[OutboxRow]:
    with m.store.uow(write=False) as uow:
        return [r for r in OutboxRepo(uow.conn).unconfirmed()
                + OutboxRepo(uow.conn).in_status(OutboxStatus.CONFIRMED) if r.kind is kind]


def _chain(m: ChainMarket) -> LiteSVMChain:
    chain = m.backend.chain
    assert isinstance(chain, LiteSVMChain)
    return chain


def _signed(key: Keypair, seq: int = 1) -> layout.SignedReceipt:
    return layout.sign(layout.Receipt(
        verdict=layout.Verdict.SETTLED, epoch=0, seq=seq, slot=0,
        market=layout.market_digest("cpu"), job=layout.job_digest(f"j{seq}"),
        definition=bytes(32), result=layout.result_digest({"seq": seq})), key)


async def test_a_published_receipt_landed_and_its_bytes_parse_back(market: ChainMarket) -> None:
    m = market
    done = await m.run_job(m.alice, seconds=10)
    got = await m.alice.receipt(done.id)
    assert got.view.onchain is None  # issued, not yet published
    assert got.parsed.slot == int(_chain(m).svm.get_clock().slot)
    stats = await m.send()
    assert stats.receipts == 1 and not stats.errors
    [row] = _rows(m, OutboxKind.RECEIPT)
    assert row.status is OutboxStatus.CONFIRMED and row.signature
    logs = await m.backend.chain.transaction_logs(row.signature)
    assert logs is not None
    assert receipt_tx.receipts_in_logs(logs) == [got.raw]
    published = await m.alice.receipt(done.id)
    assert published.view.onchain == row.signature
    layout.verify_receipt(got.raw, got.signature, got.view.attestor)
    assert (await m.send()).transactions == 0  # exactly once


async def test_the_runtime_rejects_a_forged_or_altered_receipt(market: ChainMarket) -> None:
    m = market
    chain, payer = _chain(m), m.backend.settlement.signer
    attestor, forger = Keypair(), Keypair()
    good = _signed(attestor)
    await chain.send(receipt_tx.batch_instructions([good]), [payer], payer)
    altered = bytearray(good.receipt)
    altered[layout.OFFSETS["result"][0]] ^= 0x01
    forged = [
        layout.SignedReceipt(bytes(altered), good.signature, good.attestor),  # altered bytes
        layout.SignedReceipt(good.receipt, _signed(forger).signature, good.attestor),  # wrong key
    ]
    for bad in forged:
        with pytest.raises(TransactionFailed):
            await chain.send(receipt_tx.batch_instructions([bad]), [payer], payer)
        # one bad receipt sinks the whole batch: nothing in it is published
        with pytest.raises(TransactionFailed):
            await chain.send(receipt_tx.batch_instructions([_signed(attestor, 2), bad]),
                             [payer], payer)


async def test_a_batch_of_receipts_fits_the_packer_and_lands(market: ChainMarket) -> None:
    m = market
    chain, payer = _chain(m), m.backend.settlement.signer
    key = Keypair()
    receipts = [_signed(key, seq) for seq in range(7)]
    batches = receipt_tx.pack(receipts, payer.pubkey())
    assert [len(b) for b, _ in batches] == [2, 2, 2, 1]
    seen: list[bytes] = []
    for batch, ixs in batches:
        assert spl.transaction_size(ixs, payer.pubkey()) <= spl.MAX_TRANSACTION_SIZE
        signature = await chain.send(ixs, [payer], payer)
        logs = await chain.transaction_logs(signature)
        assert logs is not None
        seen += receipt_tx.receipts_in_logs(logs)
        assert [s.receipt for s in receipt_tx.parse_ed25519(bytes(ixs[0].data))] == [
            s.receipt for s in batch]
    assert seen == [r.receipt for r in receipts]


async def test_the_sender_batches_receipts_of_several_jobs(market: ChainMarket) -> None:
    m = market
    jobs = [await m.run_job(m.alice, seconds=5) for _ in range(3)]
    stats = await m.send()
    assert stats.receipts == 3
    signatures = {r.signature for r in _rows(m, OutboxKind.RECEIPT)}
    assert len(signatures) == 2  # 2 + 1 receipts per transaction
    for job in jobs:
        assert (await m.alice.receipt(job.id)).view.onchain in signatures


@pytest.mark.parametrize("when", ["before_send", "after_send"])
async def test_a_killed_sender_publishes_each_receipt_once(market: ChainMarket,
                                                           when: str) -> None:
    m = market
    await m.backend.settlement.ensure_account(m.node.pubkey)
    done = await m.run_job(m.alice, seconds=5)
    await m.send()  # the payout and the attestor's first epoch
    with m.store.uow() as uow:  # three more receipts: two transactions in the next pass
        assert m.coord.receipts is not None
        for verdict in (layout.Verdict.AUDIT_AGREED, layout.Verdict.NODE_WRONG,
                        layout.Verdict.INCONCLUSIVE):
            m.coord.receipts.issue(uow, uow.jobs.get(done.id), verdict, 99, 0)
        uow.commit()
    sender, _ = _crashing_sender(m, when)
    with pytest.raises(Killed):
        await sender.pass_once()
    restarted = Sender(m.store, m.backend.settlement, retry_after_s=0)
    await restarted.pass_once()
    rows = _rows(m, OutboxKind.RECEIPT)
    assert len(rows) == 4 and all(r.status is OutboxStatus.CONFIRMED for r in rows)
    published: list[bytes] = []
    for signature in {r.signature for r in rows}:
        logs = await m.backend.chain.transaction_logs(signature or "")
        published += receipt_tx.receipts_in_logs(logs or [])
    assert len(published) == len(set(published)) == 4  # each exactly once
    assert (await restarted.pass_once()).transactions == 0


async def test_the_attestor_chain_published_as_memos_verifies(market: ChainMarket) -> None:
    m = market
    coord = m.coord
    assert coord.receipts is not None
    await m.run_job(m.alice, seconds=5)  # the first receipt records epoch 0
    for _ in range(2):
        with m.store.uow() as uow:
            coord.receipts.keys.rotate(uow, int(coord.now()))
            uow.commit()
    await m.send()
    rows = sorted(_rows(m, OutboxKind.ATTESTOR), key=lambda r: r.seq or 0)
    assert [r.seq for r in rows] == [0, 1, 2]
    records = []
    for row in rows:
        assert row.status is OutboxStatus.CONFIRMED
        logs = await m.backend.chain.transaction_logs(row.signature or "")
        [memo] = [line for line in logs or [] if line.startswith("Program log: nosgrid")]
        records.append(parse_memo(memo.removeprefix("Program log: ")))
    chain = await m.alice.attestor_chain()
    first = chain.epochs[0].key
    assert verify_chain(records, first) == chain.epochs[-1].key
    with pytest.raises(BrokenAttestorChain, match="epoch 2"):  # a key not vouched for
        verify_chain([records[0], records[1],
                      type(records[2])(2, str(Keypair().pubkey()), records[2].signature)],
                     first)
    with pytest.raises(BrokenAttestorChain, match="missing"):
        verify_chain([records[0], records[2]], first)
    with pytest.raises(BrokenAttestorChain):
        verify_chain(records, str(Keypair().pubkey()))  # not the market's first key
