"""Receipts of held jobs: ``held`` at once, then the audit's verdict when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from api_fixtures import Clock
from sqlalchemy import select
from test_verification_real import Grid, make_grid, node, post, run, who_got_work

from nosgrid.core.receipts import Verdict, result_digest
from nosgrid.sdk import verify_receipt
from nosgrid.store.tables import receipts


@pytest_asyncio.fixture
async def grid(tmp_path: Path) -> AsyncIterator[Grid]:
    g = await make_grid(tmp_path, Clock(), audit_rate_bps=10_000)
    yield g
    for c in g.clients:
        await c.aclose()


async def test_an_audited_job_gets_held_then_audit_agreed(grid: Grid) -> None:
    n1 = await node(grid)
    job_id = await post(grid, "deterministic")
    assert (await run(n1, b"42\n")).state == "verifying"
    held = await grid.alice.receipt(job_id)
    assert held.parsed.verdict is Verdict.HELD and held.view.earlier == []
    others = [await node(grid), await node(grid)]
    grid.coord.maintenance()
    await run(await who_got_work(others), b"42\n")
    grid.coord.maintenance()
    final = await grid.alice.receipt(job_id)
    receipt = verify_receipt(final.signed, final.view.attestor)
    assert receipt.verdict is Verdict.AUDIT_AGREED and final.view.earlier == ["held"]
    assert receipt.result == held.parsed.result  # the same result, now audited
    assert receipt.result == result_digest((await grid.alice.result(job_id)).result)
    assert receipt.seq > held.parsed.seq


async def test_a_wrong_result_gets_a_node_wrong_receipt(grid: Grid) -> None:
    liar = await node(grid, stake="100")
    job_id = await post(grid, "deterministic")
    await run(liar, b"garbage")
    honest = [await node(grid), await node(grid)]
    grid.coord.maintenance()
    auditor = await who_got_work(honest)
    await run(auditor, b"42\n")
    grid.coord.maintenance()
    [tiebreaker] = [n for n in honest if n is not auditor]
    await run(tiebreaker, b"42\n")
    grid.coord.maintenance()
    got = await grid.alice.receipt(job_id)
    assert got.parsed.verdict is Verdict.NODE_WRONG and got.view.verdict == "node_wrong"
    # the audit and tiebreak runs are the market's own: no receipts of their own
    with grid.coord.store.uow(write=False) as uow:
        issued = {job for (job,) in uow.conn.execute(select(receipts.c.job_id))}
    assert issued == {job_id}


async def test_an_unsampled_job_is_released_with_a_settled_receipt(tmp_path: Path) -> None:
    clock = Clock()
    g = await make_grid(tmp_path, clock, audit_rate_bps=0, audit_window_s=30)
    try:
        n1 = await node(g)
        job_id = await post(g, "deterministic")
        await run(n1, b"42\n")
        g.coord.maintenance()
        clock.t += 31
        g.coord.maintenance()
        got = await g.alice.receipt(job_id)
        assert got.parsed.verdict is Verdict.SETTLED and got.view.earlier == ["held"]
    finally:
        for c in g.clients:
            await c.aclose()
