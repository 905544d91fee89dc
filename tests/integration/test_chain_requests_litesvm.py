"""Compute requested from chain, on LiteSVM: a token transfer into the request vault with a
``nosgrid request`` Memo becomes a job; what cannot run is refunded with a reason Memo;
nothing is lost or done twice across a restart or a replayed signature; ``ledger verify
--onchain`` covers the vault."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from settlement_fixtures import BUSYBOX_SPEC, NOS, ChainMarket, open_chain_market
from solders.keypair import Keypair
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.chain_watcher import CURSOR, RequestWatcher
from nosgrid.coordinator.services import chain_requests
from nosgrid.core import receipts as layout
from nosgrid.core.chain_requests import RequestMemo, request_memo_text
from nosgrid.core.errors import NotFound
from nosgrid.settlement import spl
from nosgrid.settlement.requests import request_payment_instructions
from nosgrid.store.db import Store
from nosgrid.store.receipts import ChainRefundRepo, ChainRequestRepo, CursorRepo, RequestStatus

# the market's price is 1000 base units/s; a 60 s job needs a deposit of 60_000
PRICE, TIMEOUT = 1000, 60


@pytest_asyncio.fixture
async def market(tmp_path: Path) -> AsyncIterator[ChainMarket]:
    m = await open_chain_market(tmp_path)
    m.backend.publish_receipts = True
    yield m
    await m.close()


class Requester:
    """A user (or what a program's PDA would do by CPI) paying the vault for a job."""

    def __init__(self, m: ChainMarket) -> None:
        self.m = m
        self.key = Keypair()
        self.reply = Keypair().pubkey()

    async def fund(self, amount: int = 10 * NOS) -> None:
        await self.m.backend.chain.airdrop_sol(self.key.pubkey(), 10**9)
        await self.m.backend.settlement.faucet(str(self.key.pubkey()), amount)

    @property
    def account(self) -> str:
        return self.m.backend.settlement.token_account(self.key.pubkey())

    async def balance(self) -> int:
        return await self.m.token_balance(str(self.key.pubkey()))

    async def pay(self, amount: int, memo: str) -> str:
        s = self.m.backend.settlement
        assert s.request_vault is not None
        ixs = request_payment_instructions(spl.to_pubkey(self.account), s.request_vault, s.mint,
                                           self.key.pubkey(), amount, memo)
        return await s.chain.send(ixs, [self.key], self.key)

    def memo(self, spec: dict[str, Any] | None = None, **fields: Any) -> str:
        inline = json.dumps(spec or BUSYBOX_SPEC, separators=(",", ":")).encode()
        return request_memo_text(RequestMemo(str(self.reply), inline=inline,
                                             timeout=TIMEOUT, **fields))


def _refund_memos(logs: list[str] | None) -> list[str]:
    return [line.removeprefix("Program log: ") for line in logs or []
            if line.startswith("Program log: nosgrid refund")]


async def _refunds_on_chain(m: ChainMarket, request: str) -> list[str]:
    with m.store.uow(write=False) as uow:
        refunds = ChainRefundRepo(uow.conn).for_request(request)
        rows = {r.entry_hash: r for r in _outbox(m)}
    memos = []
    for refund in refunds:
        row = rows[refund.entry_hash]
        memos += _refund_memos(await m.backend.chain.transaction_logs(row.signature or ""))
    return memos


def _outbox(m: ChainMarket) -> list[Any]:
    from nosgrid.store.outbox import OutboxRepo, OutboxStatus

    with m.store.uow(write=False) as uow:
        repo = OutboxRepo(uow.conn)
        return repo.unconfirmed() + repo.in_status(OutboxStatus.CONFIRMED)


async def test_a_paid_request_becomes_a_job_whose_receipt_names_the_reply_key(
    market: ChainMarket,
) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    before = await user.balance()
    paid = 100_000  # 60_000 deposit + 40_000 to give back at once
    sig = await user.pay(paid, user.memo())
    watcher = RequestWatcher(m.coord, m.backend)
    stats = await watcher.pass_once()
    assert stats.recorded == 1 and len(stats.posted) == 1
    job_id = stats.posted[0]
    polled = await m.node.poll(wait=0)
    assert polled.job is not None and polled.job.id == job_id
    await m.node.start_job(job_id)
    m.clock.t += 10
    sha = await m.node.upload_blob(b"42\n")
    done = await m.node.finish_job(job_id, seconds_used=10, exit_code=0, outputs=[
        {"path": "/outputs/answer.txt", "sha256": sha, "size": 3}])
    assert done.state == "settled"
    payer = m.client(user.key)  # the key that paid reads the outputs
    assert await payer.download_blob(sha) == b"42\n"
    await payer.aclose()
    await m.backend.settlement.ensure_account(m.node.pubkey)
    sent = await m.send()
    assert not sent.errors, sent.errors
    got = await m.alice.receipt(job_id)
    assert got.parsed.reply_pubkey == str(user.reply)
    assert got.view.fields.reply_key == str(user.reply) and got.view.onchain
    layout.verify_receipt(got.raw, got.signature, got.view.attestor)
    cost = 10 * PRICE
    assert await user.balance() == before - cost  # every unused base unit came back
    assert await m.token_balance(m.node.pubkey) == done.settlement.node_pay
    memos = await _refunds_on_chain(m, sig)
    assert memos == [f"nosgrid refund ref={sig} reason=unused"] * 2  # at post, at settle
    view = await m.alice.chain_request(sig)  # public: anyone may look it up
    assert view.job_id == job_id and view.job_state == "settled" and view.result is not None
    assert view.reply_key == str(user.reply) and view.status == "posted"
    assert [(r.amount, r.reason) for r in view.refunds] == [(paid - PRICE * TIMEOUT, "unused"),
                                                           (PRICE * TIMEOUT - cost, "unused")]
    assert all(r.onchain for r in view.refunds)
    report = await m.backend.reconcile(m.store)
    assert report["ok"], report["problems"]
    assert any(r["account"] == "request_vault" and r["onchain"] == 0
               for r in report["accounts_checked"])


@pytest.mark.parametrize(("memo", "amount", "reason"), [
    ("nosgrid request def=nothex reply=x", 100_000, "bad_memo"),
    ("hello world", 100_000, "bad_memo"),
    (None, 100_000, "unknown_definition"),
    ("", 1_000, "price_too_low"),
    ("market", 100_000, "unknown_market"),
])
async def test_a_request_that_cannot_run_is_refunded_with_a_reason(
    market: ChainMarket, memo: str | None, amount: int, reason: str,
) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    before = await user.balance()
    if memo is None:  # a definition nobody stored
        memo = request_memo_text(RequestMemo(str(user.reply), definition_sha256="ab" * 32))
    elif memo == "":
        memo = user.memo()
    elif memo == "market":
        memo = user.memo(market="no-such-market")
    sig = await user.pay(amount, memo)
    stats = await RequestWatcher(m.coord, m.backend).pass_once()
    assert stats.recorded == 1 and stats.refunded == 1 and not stats.posted
    assert await user.balance() == before - amount  # not yet: the refund is queued
    await m.send()
    assert await user.balance() == before
    assert await _refunds_on_chain(m, sig) == [f"nosgrid refund ref={sig} reason={reason}"]
    view = await m.alice.chain_request(sig)
    assert view.status == "refunded" and view.job_id is None and view.reason
    assert [r.reason for r in view.refunds] == [reason]
    with pytest.raises(NotFound):
        await m.alice.chain_request("1" * 64)
    with m.store.uow(write=False) as uow:
        request = ChainRequestRepo(uow.conn).get(sig)
        assert request is not None and request.status is RequestStatus.REFUNDING
        assert uow.jobs.list_for_client(str(m.backend.settlement.request_vault))[0] == []
    assert (await m.backend.reconcile(m.store))["ok"]


async def test_a_definition_stored_as_a_blob_is_named_by_its_sha256(
    market: ChainMarket,
) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    await m.fund(m.alice)
    body = json.dumps(BUSYBOX_SPEC).encode()
    sha = await m.alice.upload_blob(body)
    memo = request_memo_text(RequestMemo(str(user.reply), definition_sha256=sha,
                                         timeout=TIMEOUT))
    await user.pay(PRICE * TIMEOUT, memo)
    stats = await RequestWatcher(m.coord, m.backend).pass_once()
    assert len(stats.posted) == 1 and stats.refunded == 0


async def test_a_crash_between_seeing_and_posting_neither_loses_nor_duplicates(
    market: ChainMarket,
) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    sig = await user.pay(PRICE * TIMEOUT, user.memo())
    first = RequestWatcher(m.coord, m.backend)
    seen = await first.pass_once(act=False)  # recorded, then the process dies
    assert seen.recorded == 1 and not seen.posted
    with m.store.uow(write=False) as uow:
        assert CursorRepo(uow.conn).get(CURSOR) == sig
        request = ChainRequestRepo(uow.conn).get(sig)
        assert request is not None and request.status is RequestStatus.SEEN
    # a new coordinator on the same database (the chain, in-process here, lives on)
    coord2 = create_app(m.coord.settings, store=Store.open(m.coord.settings.db_url,
                                                           now=m.clock),
                        clock=m.clock, background=False,
                        settlement=m.backend).state.coordinator
    restarted = RequestWatcher(coord2, m.backend)
    again = await restarted.pass_once()
    assert again.read == 0 and again.recorded == 0 and len(again.posted) == 1
    with m.store.uow() as uow:  # a watcher that lost its place re-reads everything
        CursorRepo(uow.conn).set(CURSOR, "", 0)
        uow.commit()
    replay = await RequestWatcher(m.coord, m.backend).pass_once()
    assert replay.read >= 1 and replay.recorded == 0 and not replay.posted
    with m.store.uow(write=False) as uow:
        vault = str(m.backend.settlement.request_vault)
        jobs, _ = uow.jobs.list_for_client(vault)
        assert [j.id for j in jobs] == again.posted
    assert (await m.backend.reconcile(m.store))["ok"]


async def test_a_timed_out_job_is_refunded_as_usual(market: ChainMarket) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    before = await user.balance()
    sig = await user.pay(PRICE * TIMEOUT, user.memo())
    [job_id] = (await RequestWatcher(m.coord, m.backend).pass_once()).posted
    assert (await m.node.poll(wait=0)).job.id == job_id
    await m.node.start_job(job_id)
    m.clock.t += TIMEOUT + m.coord.settings.deadline_grace_s + 1
    m.coord.maintenance()  # the node never reported: timed out, the node's fault
    with m.store.uow(write=False) as uow:
        assert uow.jobs.get(job_id).state.value == "settled"
    await m.send()
    assert await user.balance() == before
    assert await _refunds_on_chain(m, sig) == [f"nosgrid refund ref={sig} reason=job_ended"]
    assert (await m.backend.reconcile(m.store))["ok"]


async def test_verify_onchain_notes_a_payment_not_yet_read(market: ChainMarket) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    await user.pay(PRICE * TIMEOUT, user.memo())
    report = await m.backend.reconcile(m.store)
    assert report["ok"] and any("request_vault" in n for n in report["notes"])
    # a vault emptied behind the ledger's back is a problem
    s = m.backend.settlement
    assert s.request_vault is not None
    await RequestWatcher(m.coord, m.backend).pass_once()
    thief = s.token_account(s.authority)
    await s.chain.create_ata(s.authority, s.mint, s.signer)
    await s.chain.send([spl.transfer_instruction(s.request_vault, spl.to_pubkey(thief), s.mint,
                                                 s.authority, PRICE * TIMEOUT)],
                       [s.signer], s.signer)
    broken = await m.backend.reconcile(m.store)
    assert not broken["ok"] and any("request_vault" in p for p in broken["problems"])


def test_inline_memo_round_trip() -> None:
    text = request_memo_text(RequestMemo(str(Keypair().pubkey()), inline=b"{}", market="cpu"))
    assert "inline=" + base64.b64encode(b"{}").decode() in text


async def test_the_litesvm_adapter_reads_inner_instructions_and_an_address_history(
    market: ChainMarket,
) -> None:
    """What lets a payment made by CPI (a program's PDA) count: inner instructions."""
    m = market
    s = m.backend.settlement
    owner = Keypair().pubkey()
    sig = await s.chain.send([spl.create_ata_instruction(s.authority, owner, s.mint)],
                             [s.signer], s.signer)
    tx = await s.chain.transaction(sig)
    assert tx is not None and tx.signature == sig
    programs = [ix.program for ix in tx.instructions]
    assert programs[0] == str(ASSOCIATED_TOKEN_PROGRAM_ID)
    assert str(spl.TOKEN_PROGRAM_ID) in programs[1:]  # the ATA program's CPIs
    assert sig in await s.chain.signatures_for(spl.ata(owner, s.mint))
    assert await s.chain.signatures_for(spl.ata(owner, s.mint), after=sig) == []
    assert await s.chain.transaction("1" * 64) is None


async def test_two_processes_acting_on_one_request_post_one_job(market: ChainMarket) -> None:
    m = market
    user = Requester(m)
    await user.fund()
    sig = await user.pay(PRICE * TIMEOUT, user.memo())
    await RequestWatcher(m.coord, m.backend).pass_once(act=False)
    vault = str(m.backend.settlement.request_vault)
    with m.store.uow(write=False) as uow:
        [seen] = chain_requests.pending(uow)
    jobs = []
    for _ in range(2):  # both read it as waiting; the second finds it claimed
        with m.store.uow() as uow:
            jobs.append(chain_requests.process_request(uow, vault, seen.signature, 0,
                                                       blobs=lambda _sha: None))
            uow.commit()
    assert jobs[0] is not None and jobs[1] is None
    with m.store.uow(write=False) as uow:
        assert len(uow.jobs.list_for_client(vault)[0]) == 1
        request = ChainRequestRepo(uow.conn).get(sig)
        assert request is not None and request.job_id == jobs[0].id
