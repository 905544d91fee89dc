"""A job requested from chain runs in a real Podman container on a real node agent, settles
on LiteSVM and yields a receipt that names the reply key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from executor_fixtures import HAVE_PODMAN, busybox_image
from settlement_fixtures import open_chain_market
from test_agent import NodeUnderTest
from test_chain_requests_litesvm import TIMEOUT, Requester

from nosgrid.coordinator.chain_watcher import RequestWatcher
from nosgrid.core import receipts as layout
from nosgrid.settlement.receipts import receipts_in_logs
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxStatus

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(not HAVE_PODMAN, reason="podman is not installed"),
]
__all__ = ["busybox_image"]


async def test_a_chain_request_runs_in_a_container_and_its_receipt_names_the_reply_key(
    tmp_path: Path, busybox_image: str,
) -> None:
    m = await open_chain_market(tmp_path)
    m.backend.publish_receipts = True
    node = NodeUnderTest(m, tmp_path)  # type: ignore[arg-type]
    node.start()
    try:
        user = Requester(m)
        await user.fund()
        before = await user.balance()
        spec = {"version": "0.1", "type": "container",
                "ops": [{"type": "container/run", "id": "main",
                         "args": {"image": busybox_image, "cmd": "echo from-chain"}}]}
        await user.pay(2 * 1000 * TIMEOUT, user.memo(spec))
        await asyncio.sleep(1.5)  # the agent registers and waits for work
        watcher = RequestWatcher(m.coord, m.backend)
        [job_id] = (await watcher.pass_once()).posted
        for _ in range(300):
            with m.store.uow(write=False) as uow:
                if uow.jobs.get(job_id).state.value == "settled":
                    break
            await asyncio.sleep(0.1)
        with m.store.uow(write=False) as uow:
            job = uow.jobs.get(job_id)
        assert job.state.value == "settled" and job.outcome is not None, job
        assert job.outcome.value == "completed", job.reason
        await m.backend.settlement.ensure_account(node.client.pubkey)
        sent = await m.send()
        assert not sent.errors, sent.errors
        got = await m.alice.receipt(job_id)
        receipt = layout.verify_receipt(got.raw, got.signature, got.view.attestor)
        assert receipt.reply_pubkey == str(user.reply)
        assert receipt.verdict is layout.Verdict.SETTLED
        assert receipt.result == layout.result_digest(job.result)
        with m.store.uow(write=False) as uow:
            [row] = [r for r in OutboxRepo(uow.conn).in_status(OutboxStatus.CONFIRMED)
                     if r.kind is OutboxKind.RECEIPT]
        logs = await m.backend.chain.transaction_logs(row.signature or "")
        assert receipts_in_logs(logs or []) == [got.raw]
        assert await user.balance() == before - job.price_per_second * job.seconds_used
        assert (await m.backend.reconcile(m.store))["ok"]
    finally:
        await node.close()
        await m.close()
