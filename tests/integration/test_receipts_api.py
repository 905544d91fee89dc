"""Result receipts through the in-process coordinator: issued when a job settles, read by
``GET /v1/jobs/{id}/receipt`` and the SDK, verified against the attestor key chain."""

from __future__ import annotations

import hashlib

import pytest
from api_fixtures import BUSYBOX_SPEC, Market

from nosgrid.core import receipts as layout
from nosgrid.core.attestor import AttestorEpoch, verify_chain
from nosgrid.core.errors import InvalidReceipt, JobNotFound, ReceiptNotFound
from nosgrid.sdk import verify_receipt
from nosgrid.store.receipts import ReceiptRepo

HW = {"cpu_cores": 2, "memory_mb": 4096}


async def _run_job(m: Market, *, fail: bool = False) -> str:
    await m.alice.faucet("10")
    await m.node.register_node(HW, ["cpu"])
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    assert (await m.node.poll(wait=0)).job.id == job.id
    await m.node.start_job(job.id)
    m.clock.t += 30
    if fail:
        await m.node.fail_job(job.id, fault="client", reason="exit 1", seconds_used=30)
    else:
        await m.node.finish_job(job.id, seconds_used=30, exit_code=0,
                                outputs=[])
    return job.id


async def test_a_settled_job_has_a_receipt_that_verifies(market: Market) -> None:
    m = market
    job_id = await _run_job(m)
    got = await m.bob.receipt(job_id)  # receipts are public: anyone may read one
    chain = await m.bob.attestor_chain()
    assert chain.current is not None and chain.current.epoch == 0
    attestor = verify_chain([AttestorEpoch(e.epoch, e.key, e.signature) for e in chain.epochs],
                            chain.epochs[0].key)
    receipt = verify_receipt(got.signed, attestor)
    job = await m.alice.job(job_id)
    result = await m.alice.result(job_id)
    assert receipt.verdict is layout.Verdict.SETTLED and got.view.verdict == "settled"
    assert receipt.job == hashlib.sha256(job_id.encode()).digest()
    assert receipt.market == layout.market_digest("cpu")
    assert receipt.definition.hex() == job.spec_hash
    assert receipt.result == layout.result_digest(result.result)
    assert receipt.reply_pubkey is None and receipt.slot == 0
    with m.coord.store.uow(write=False) as uow:
        head = uow.ledger.head()
    assert head is not None and receipt.seq == head[0]  # the job.settled entry
    assert got.view.fields.result == receipt.result.hex() and got.view.onchain is None


async def test_a_forged_or_altered_receipt_does_not_verify(market: Market) -> None:
    m = market
    got = await m.bob.receipt(await _run_job(m))
    altered = bytearray(got.signed)
    altered[64 + 108] ^= 1  # one bit of the result hash
    with pytest.raises(InvalidReceipt):
        verify_receipt(bytes(altered), got.view.attestor)
    with pytest.raises(InvalidReceipt):
        verify_receipt(got.signed, str(m.alice.pubkey))  # another key
    with pytest.raises(InvalidReceipt):
        verify_receipt(got.signed[:100], got.view.attestor)


async def test_no_receipt_without_a_result_or_a_job(market: Market) -> None:
    m = market
    failed = await _run_job(m, fail=True)
    with pytest.raises(ReceiptNotFound):
        await m.bob.receipt(failed)
    with pytest.raises(JobNotFound):
        await m.bob.receipt("no-such-job")


async def test_receipts_are_stored_once_per_verdict(market: Market) -> None:
    m = market
    job_id = await _run_job(m)
    coord = m.coord
    assert coord.receipts is not None
    with coord.store.uow() as uow:
        job = uow.jobs.get(job_id)
        again = coord.receipts.issue(uow, job, layout.Verdict.SETTLED, 1, 0)
        uow.commit()
    assert again is None
    with coord.store.uow(write=False) as uow:
        assert len(ReceiptRepo(uow.conn).for_job(job_id)) == 1


async def test_rotation_moves_receipts_to_the_new_key(market: Market) -> None:
    m = market
    first = await m.bob.receipt(await _run_job(m))
    coord = m.coord
    assert coord.receipts is not None
    with coord.store.uow() as uow:
        nxt = coord.receipts.keys.rotate(uow, int(coord.now()))
        uow.commit()
    await m.alice.faucet("1")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    assert (await m.node.poll(wait=0)).job.id == job.id
    await m.node.start_job(job.id)
    await m.node.finish_job(job.id, seconds_used=1, exit_code=0, outputs=[])
    second = await m.bob.receipt(job.id)
    assert second.parsed.epoch == 1 and second.view.attestor == nxt.key
    chain = await m.bob.attestor_chain()
    records = [AttestorEpoch(e.epoch, e.key, e.signature) for e in chain.epochs]
    assert verify_chain(records, first.view.attestor) == nxt.key
    verify_receipt(second.signed, nxt.key)
    verify_receipt(first.signed, first.view.attestor)  # old receipts keep their epoch's key
