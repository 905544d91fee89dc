"""Solana settlement through the coordinator API, on LiteSVM: approve, post, run, pay."""

from __future__ import annotations

from pathlib import Path

import pytest
from settlement_fixtures import (
    BUSYBOX_SPEC,
    HW,
    NOS,
    ChainMarket,
    chain_market,
    open_chain_market,
)

from nosgrid.core.errors import Forbidden, InvalidInput, NotFound
from nosgrid.core.ledger import wallet
from nosgrid.sdk import solana as solana_wallet
from nosgrid.sdk.client import AsyncClient
from nosgrid.settlement.errors import AllowanceTooSmall
from nosgrid.settlement.mirror import ONCHAIN
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxStatus

__all__ = ["chain_market"]


async def test_full_lifecycle_pays_on_chain_exactly_what_the_ledger_says(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    s = m.backend.settlement
    approved = await m.fund(m.alice, "100", approve=5 * NOS)
    assert approved.allowance == 5 * NOS and approved.free == 5 * NOS
    assert approved.onchain_balance == 100 * NOS
    assert (await m.alice.balance()).balance == 5 * NOS  # the ledger mirrors the allowance
    node_before = await m.token_balance(m.node.pubkey)
    treasury_before = (await s.balances([str(s.treasury)]))[str(s.treasury)]

    done = await m.run_job(m.alice, seconds=30)
    assert done.state == "settled"
    pay = done.settlement
    assert pay.node_pay + pay.treasury_fee + pay.stakers_fee == 30_000
    # committed with the settle entry, not yet on chain
    assert (await m.alice.request("GET", f"/v1/solana/payouts/{done.id}"))["payouts"][0][
        "status"] == "pending"
    assert await m.token_balance(m.node.pubkey) == node_before

    stats = await m.send()
    assert stats.confirmed == 1 and stats.transactions == 1
    assert await m.token_balance(m.node.pubkey) - node_before == pay.node_pay
    treasury_after = (await s.balances([str(s.treasury)]))[str(s.treasury)]
    assert treasury_after - treasury_before == pay.treasury_fee
    assert (await s.balances([str(s.rewards_vault)]))[str(s.rewards_vault)] == pay.stakers_fee
    assert await m.token_balance(m.alice.pubkey) == 100 * NOS - 30_000
    assert await s.allowance(m.alice.pubkey) == 5 * NOS - 30_000

    view = await m.alice.request("GET", f"/v1/solana/payouts/{done.id}")
    row = view["payouts"][0]
    assert row["status"] == "confirmed" and row["attempts"] == 1
    logs = m.backend.chain.logs(row["signature"])  # type: ignore[attr-defined]
    assert any(f"job={done.id}" in line and f"entry={row['entry_hash']}" in line
               for line in logs)
    report = await solana_wallet.verify_onchain(m.alice)
    assert report.ok, report.problems
    assert (await m.alice.balance()).balance == 5 * NOS - 30_000  # refund stays approved
    assert (await m.node.balance()).balance == 0  # paid out: on chain, not in the market


async def test_refund_needs_no_transaction(chain_market: ChainMarket) -> None:
    m = chain_market
    await m.fund(m.alice)
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    await m.alice.cancel(job.id)
    stats = await m.send()
    assert stats.transactions == 0
    assert (await m.alice.request("GET", f"/v1/solana/payouts/{job.id}"))["payouts"] == []
    assert (await solana_wallet.verify_onchain(m.alice)).ok


async def test_posting_without_allowance_is_refused_and_changes_nothing(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await solana_wallet.faucet(m.alice, "100")  # tokens, but no approval
    before = await m.alice.ledger_verify()
    with pytest.raises(AllowanceTooSmall, match="nosgrid wallet approve"):
        await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    await solana_wallet.approve(m.alice, 50_000)  # less than the 0.1 NOS deposit
    mid = await m.alice.ledger_verify()
    with pytest.raises(AllowanceTooSmall):
        await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    assert (await m.alice.ledger_verify()).entries == mid.entries == before.entries + 1
    assert (await m.alice.jobs()).jobs == []
    assert (await m.node.poll(wait=0)).job is None


async def test_revoked_allowance_keeps_the_payout_pending_until_approved_again(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await m.fund(m.alice, approve=NOS)
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    await solana_wallet.approve(m.alice, 0)  # the client takes the approval back on chain
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 10
    await m.node.finish_job(job.id, seconds_used=10, exit_code=0)
    stats = await m.send()
    assert stats.confirmed == 0 and "approve" in stats.errors[0]
    report = await solana_wallet.verify_onchain(m.alice)
    assert not report.ok and any("approve more" in p for p in report.problems)
    await solana_wallet.approve(m.alice, NOS)
    assert (await m.send()).confirmed == 1
    assert (await solana_wallet.verify_onchain(m.alice)).ok


async def test_frozen_client_account_is_a_clear_error(chain_market: ChainMarket) -> None:
    m = chain_market
    await m.fund(m.alice, approve=NOS)
    s = m.backend.settlement
    await m.backend.chain.freeze(s.token_account(m.alice.pubkey), s.mint, s.signer)
    done = await m.run_job(m.alice, seconds=5)
    stats = await m.send()
    assert stats.confirmed == 0 and "frozen" in stats.errors[0]
    payout = (await m.alice.request("GET", f"/v1/solana/payouts/{done.id}"))["payouts"][0]
    assert payout["status"] == "pending" and "frozen" in payout["error"]


async def test_relay_accepts_only_the_signers_token_transactions(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await solana_wallet.faucet(m.alice, "1")
    info = await m.alice.request("GET", "/v1/solana/info", signed=False)
    raw = solana_wallet.approve_transaction(info, m.node.keypair, NOS)  # signed by another key
    import base64

    with pytest.raises(Forbidden, match="fee payer"):
        await m.alice.request("POST", "/v1/solana/submit",
                              json_body={"transaction": base64.b64encode(raw).decode()})
    with pytest.raises(InvalidInput):
        await m.alice.request("POST", "/v1/solana/submit", json_body={"transaction": "!!"})


async def test_local_coordinator_has_no_solana_routes(tmp_path: Path) -> None:
    from api_fixtures import market as _unused  # noqa: F401

    from nosgrid.coordinator.app import create_app
    from nosgrid.coordinator.settings import CoordinatorSettings
    app = create_app(CoordinatorSettings(db=str(tmp_path / "l.db"), data_dir=tmp_path),
                     background=False)
    import httpx

    async with AsyncClient("http://c", transport=httpx.ASGITransport(app=app)) as c:
        with pytest.raises(NotFound, match="settles locally"):
            await c.request("GET", "/v1/solana/info", signed=False)


async def test_batched_payouts_and_anchors(tmp_path: Path) -> None:
    m = await open_chain_market(tmp_path, batch_size=8, anchor_every=5)
    try:
        await m.fund(m.alice, approve=10 * NOS)
        jobs = [await m.run_job(m.alice, seconds=i + 1) for i in range(6)]
        stats = await m.send()
        assert stats.confirmed == 6 + stats.anchored and stats.anchored == 1
        assert stats.transactions < 6 + 1  # several jobs per transaction
        owed = sum(j.settlement.node_pay for j in jobs)
        assert await m.token_balance(m.node.pubkey) == owed
        report = await solana_wallet.verify_onchain(m.alice)
        assert report.ok, report.problems
        assert report.anchors_checked == 1
        with m.store.uow(write=False) as uow:
            assert uow.ledger.balance(ONCHAIN) > 0
            assert uow.ledger.balance(wallet(m.node.pubkey)) == 0
    finally:
        await m.close()


async def test_replicas_pay_each_runner_from_the_clients_token_account(tmp_path: Path) -> None:
    m = await open_chain_market(tmp_path, auditor_min_clean_jobs=0, auditor_min_reputation=0.0)
    second = m.client()
    try:
        await m.fund(m.alice, "100", approve=5 * NOS)
        await second.register_node(HW, ["cpu"])
        spec = {**BUSYBOX_SPEC, "meta": {"nosgrid": {"verification": "deterministic",
                                                     "replicas": 2}}}
        job = await m.alice.post_job(spec=spec, market="cpu", timeout=100)
        # both runs' deposits are reserved against the allowance
        assert (await m.alice.balance()).balance == 5 * NOS - 2 * 100_000
        sha = await m.node.upload_blob(b"42\n")
        outputs = [{"path": "/outputs/out.txt", "sha256": sha, "size": 3}]
        for runner in (m.node, second):
            if runner is second:
                m.coord.maintenance()  # the replica run, assigned to the only other node
            polled = await runner.poll(wait=0)
            await runner.start_job(polled.job.id)
            m.clock.t += 5
            await runner.heartbeat()
            held = await runner.finish_job(polled.job.id, seconds_used=5,
                                           outputs=outputs)
            assert held.state == "verifying"
        m.coord.maintenance()  # they agree: both runs settle, two payouts
        v = await m.alice.request("GET", f"/v1/jobs/{job.id}/verification")
        assert v["status"] == "passed" and v["runs"][0]["paid"]
        before = {n.pubkey: await m.token_balance(n.pubkey) for n in (m.node, second)}
        stats = await m.send()
        assert stats.confirmed == 2
        for n in (m.node, second):  # 5 s × 1000, 5% fee → 4750 each, on chain
            assert await m.token_balance(n.pubkey) - before[n.pubkey] == 4_750
        assert await m.token_balance(m.alice.pubkey) == 100 * NOS - 2 * 5_000
        assert (await m.alice.balance()).balance == 5 * NOS - 2 * 5_000
        report = await solana_wallet.verify_onchain(m.alice)
        assert report.ok, report.problems
    finally:
        await second.aclose()
        await m.close()


async def test_audit_fees_and_audit_pay_move_through_the_audit_vault(tmp_path: Path) -> None:
    """Audits on Solana: the fee carved from a node's pay is transferred into the audit
    vault with the payout, auditors are paid out of the vault, and ``verify --onchain``
    holds throughout, also while a pool-funded audit run holds pool money in escrow."""
    m = await open_chain_market(tmp_path, auditor_min_clean_jobs=0, auditor_min_reputation=0.0,
                                audit_rate_bps=10_000, audit_window_s=60)
    s = m.backend.settlement
    other, third = m.client(), m.client()
    try:
        await m.admin.create_market({"name": "audited", "price_per_second": 1000,
                                     "max_timeout": 600, "fee_bps": 500, "audit_fee_bps": 1200})
        await m.fund(m.alice, "100", approve=5 * NOS)
        nodes = [m.node]
        await m.node.register_node(HW, ["audited"])
        spec = {**BUSYBOX_SPEC, "meta": {"nosgrid": {"verification": "deterministic"}}}
        sha = await m.node.upload_blob(b"42\n")

        async def beat(seconds: int) -> None:
            m.clock.t += seconds
            for n in nodes:
                await n.heartbeat()

        async def take_and_finish() -> None:
            for n in nodes:
                got = await n.poll(wait=0)
                if got.job is not None:
                    await n.start_job(got.job.id)
                    await beat(5)
                    await n.finish_job(got.job.id, seconds_used=5, outputs=[
                        {"path": "/outputs/out.txt", "sha256": sha, "size": 3}])
                    return
            raise AssertionError("nobody got the job")

        async def books_balance() -> None:
            await m.send()
            report = await solana_wallet.verify_onchain(m.alice)
            assert report.ok, report.problems

        # 1. nobody can audit: the job is released when the window closes, and its 12%
        #    audit fee (5 s × 1000 → 600) lands in the audit vault with the payout
        first = await m.alice.post_job(spec=spec, market="audited", timeout=100)
        await take_and_finish()
        m.coord.maintenance()
        await beat(61)
        m.coord.maintenance()
        assert (await m.alice.request("GET", f"/v1/jobs/{first.id}/verification")
                )["status"] == "released"
        await books_balance()
        assert (await s.balances([str(s.audit_vault)]))[str(s.audit_vault)] == 600

        # 2. with auditors around, the next job is audited by a run the pool funds (its
        #    escrow is vault money), then the auditor is paid from the vault
        for n in (other, third):
            await n.register_node(HW, ["audited"])
            nodes.append(n)
        job = await m.alice.post_job(spec=spec, market="audited", timeout=100)
        await take_and_finish()
        m.coord.maintenance()
        [run] = (await m.alice.request("GET", f"/v1/jobs/{job.id}/verification"))["runs"]
        with m.store.uow(write=False) as uow:
            assert uow.ledger.balance(f"escrow:{run['job']}") == 600
        await books_balance()
        auditor_before = await m.token_balance(run["node"])
        await take_and_finish()
        m.coord.maintenance()
        assert (await m.alice.request("GET", f"/v1/jobs/{job.id}/verification")
                )["status"] == "passed"
        await books_balance()
        with m.store.uow(write=False) as uow:
            [paid] = [row for row in OutboxRepo(uow.conn).in_status(OutboxStatus.CONFIRMED)
                      if row.kind is OutboxKind.AUDIT_PAY]
        # the auditor is paid the job's gross as far as the pool goes: both fees
        assert paid.total == 1200 and paid.legs[0].destination == run["node"]
        assert await m.token_balance(run["node"]) - auditor_before == 1200
        assert (await s.balances([str(s.audit_vault)]))[str(s.audit_vault)] == 0
        logs = m.backend.chain.logs(paid.signature or "")  # type: ignore[attr-defined]
        assert any(f"nosgrid audit job={job.id}" in line for line in logs)
    finally:
        await other.aclose()
        await third.aclose()
        await m.close()


async def test_epoch_rewards_leave_the_emissions_vault(chain_market: ChainMarket) -> None:
    """The reserve's on-chain home is the emissions vault (minted at opening on a market
    that bootstrapped its mint); an epoch's provider rewards are transfers out of it."""
    m = chain_market
    s = m.backend.settlement
    vault = str(s.emissions_vault)
    with m.store.uow(write=False) as uow:
        reserve = uow.ledger.balance("alloc:reserve") + uow.ledger.balance("rewards_pool")
    assert (await s.balances([vault]))[vault] == reserve == 25_000_000 * NOS
    assert (await solana_wallet.verify_onchain(m.alice)).ok
    await m.fund(m.alice)
    await m.run_job(m.alice, seconds=50)
    await m.send()
    before = await m.token_balance(m.node.pubkey)
    m.clock.t += 7 * 24 * 3600  # the first epoch is over
    await m.node.heartbeat()
    assert m.coord.maintenance()["epochs"] == 1
    stats = await m.send()
    assert stats.failed == 0 and stats.stake_moves == 1, stats.errors
    reward = 50 * 10_000  # 0.01 NOS per verified second (the cap)
    assert await m.token_balance(m.node.pubkey) - before == reward
    assert (await s.balances([vault]))[vault] == reserve - reward
    with m.store.uow(write=False) as uow:
        [row] = [r for r in OutboxRepo(uow.conn).in_status(OutboxStatus.CONFIRMED)
                 if r.kind is OutboxKind.EMISSION]
    logs = m.backend.chain.logs(row.signature or "")  # type: ignore[attr-defined]
    assert any("nosgrid emission epoch=0 entry=" in line for line in logs)
    report = await solana_wallet.verify_onchain(m.alice)
    assert report.ok, report.problems
    assert (await m.node.balance()).balance == 0  # paid out: on chain, not in the market


async def test_a_dispute_on_chain_refunds_slashes_and_pays_the_panel(tmp_path: Path) -> None:
    """A lying node on Solana: the client's refund needs no transaction, the slash leaves
    the stake vault, the auditor and the panel are paid out of the audit vault, and
    ``verify --onchain`` holds."""
    m = await open_chain_market(tmp_path, auditor_min_clean_jobs=0, auditor_min_reputation=0.0,
                                audit_rate_bps=10_000, audit_window_s=60)
    s = m.backend.settlement
    liar = m.node
    honest = [m.client(), m.client()]
    try:
        await m.admin.create_market({"name": "audited", "price_per_second": 1000,
                                     "max_timeout": 600, "fee_bps": 500, "audit_fee_bps": 1200})
        await m.fund(m.alice, "100", approve=5 * NOS)
        await m.fund(liar, "100", approve=20 * NOS)
        await liar.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "10",
                                                           "days": 30})
        await liar.register_node(HW, ["audited"])
        spec = {**BUSYBOX_SPEC, "meta": {"nosgrid": {"verification": "deterministic"}}}
        good, bad = await liar.upload_blob(b"42\n"), await liar.upload_blob(b"lies")
        nodes = [liar]

        async def take_and_finish(sha: str, among: list[AsyncClient]) -> AsyncClient:
            for n in among:
                got = await n.poll(wait=0)
                if got.job is not None:
                    await n.start_job(got.job.id)
                    m.clock.t += 5
                    for beat in nodes:
                        await beat.heartbeat()
                    await n.finish_job(got.job.id, seconds_used=5, outputs=[
                        {"path": "/outputs/out.txt", "sha256": sha, "size": 3}])
                    return n
            raise AssertionError("nobody got the job")

        # seed the audit pool: a job nobody can audit is released, its fee kept (600)
        await m.alice.post_job(spec=spec, market="audited", timeout=100)
        await take_and_finish(good, [liar])
        m.coord.maintenance()
        m.clock.t += 61
        await liar.heartbeat()
        m.coord.maintenance()
        for n in honest:
            await n.register_node(HW, ["audited"])
            nodes.append(n)
        await m.send()
        client_before = await m.token_balance(m.alice.pubkey)

        job = await m.alice.post_job(spec=spec, market="audited", timeout=100)
        assert await take_and_finish(bad, [liar]) is liar
        m.coord.maintenance()  # the audit run
        auditor = await take_and_finish(good, honest)
        m.coord.maintenance()  # outputs differ: disputed, a tiebreak run
        await take_and_finish(good, [n for n in honest if n is not auditor])
        m.coord.maintenance()  # verdict
        v = await m.alice.request("GET", f"/v1/jobs/{job.id}/verification")
        assert v["verdict"] == "node_wrong" and v["slashed"] == [liar.pubkey]
        stats = await m.send()
        assert stats.failed == 0, stats.errors
        with m.store.uow(write=False) as uow:
            kinds = {r.kind for r in OutboxRepo(uow.conn).in_status(OutboxStatus.CONFIRMED)}
        assert {OutboxKind.SLASH, OutboxKind.AUDIT_PAY} <= kinds
        # the lie cost the client nothing: its refund never left its token account
        assert await m.token_balance(m.alice.pubkey) == client_before
        assert (await s.balances([str(s.stake_vault)]))[str(s.stake_vault)] == 5 * NOS
        report = await solana_wallet.verify_onchain(m.alice)
        assert report.ok, report.problems
    finally:
        for n in honest:
            await n.aclose()
        await m.close()


async def test_the_posting_fee_is_a_transfer_to_the_treasury_even_when_cancelled(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    s = m.backend.settlement
    await m.admin.create_market({"name": "fee", "price_per_second": 1000, "max_timeout": 600,
                                 "posting_fee": 20_000})
    await m.fund(m.alice)
    treasury_before = (await s.balances([str(s.treasury)]))[str(s.treasury)]
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="fee", timeout=100)
    await m.alice.cancel(job.id)
    stats = await m.send()
    assert stats.confirmed == 1  # the fee's transfer; the cancel's refund needs none
    treasury_after = (await s.balances([str(s.treasury)]))[str(s.treasury)]
    assert treasury_after - treasury_before == 20_000
    assert await m.token_balance(m.alice.pubkey) == 100 * NOS - 20_000
    report = await solana_wallet.verify_onchain(m.alice)
    assert report.ok, report.problems
