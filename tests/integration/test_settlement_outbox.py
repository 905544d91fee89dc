"""Crash safety of the outbox sender: kill it between commit and send, and between send and
record; a restarted sender pays every payout exactly once. Plus: on-chain balances equal
ledger balances after random sequences of approvals and jobs (hypothesis)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from settlement_fixtures import NOS, ChainMarket, chain_market, open_chain_market
from solders.instruction import Instruction
from solders.keypair import Keypair

from nosgrid.sdk import solana as solana_wallet
from nosgrid.settlement.chain import PreparedTransaction
from nosgrid.settlement.errors import AllowanceTooSmall
from nosgrid.settlement.litesvm_chain import LiteSVMChain
from nosgrid.settlement.sender import Sender
from nosgrid.store.outbox import OutboxRepo, OutboxStatus

__all__ = ["chain_market"]


class Killed(BaseException):
    """The sender process dies here (not an Exception: nothing may catch it)."""


class CrashingChain(LiteSVMChain):
    """The same SVM, but the process 'dies' before or after the next submit."""

    def __init__(self, inner: LiteSVMChain, when: str) -> None:
        super().__init__(inner.svm)
        self.when = when
        self.submits = 0

    async def prepare(self, instructions: Sequence[Instruction], signers: Sequence[Keypair],
                      payer: Keypair) -> PreparedTransaction:
        return await super().prepare(instructions, signers, payer)

    async def submit(self, prepared: PreparedTransaction) -> str:
        self.submits += 1
        if self.when == "before_send":
            raise Killed
        signature = await super().submit(prepared)
        if self.when == "after_send":
            raise Killed
        return signature


def _rows(m: ChainMarket) -> list[Any]:
    with m.store.uow(write=False) as uow:
        return OutboxRepo(uow.conn).in_status(OutboxStatus.SENT) + OutboxRepo(
            uow.conn).in_status(OutboxStatus.CONFIRMED) + OutboxRepo(uow.conn).in_status(
            OutboxStatus.PENDING)


def _crashing_sender(m: ChainMarket, when: str) -> tuple[Sender, CrashingChain]:
    chain = CrashingChain(m.backend.chain, when)  # type: ignore[arg-type]
    settlement = m.backend.settlement
    crashing = type(settlement)(chain, mint=settlement.mint, authority=settlement.signer,
                                treasury=settlement.treasury,
                                stake_vault=settlement.stake_vault,
                                rewards_vault=settlement.rewards_vault)
    return Sender(m.store, crashing, retry_after_s=0), chain


@pytest.mark.parametrize("when", ["before_send", "after_send"])
async def test_a_killed_sender_pays_exactly_once_after_restart(
    chain_market: ChainMarket, when: str
) -> None:
    m = chain_market
    await m.fund(m.alice, approve=5 * NOS)
    await m.backend.settlement.ensure_account(m.node.pubkey)  # only the payout may crash
    done = await m.run_job(m.alice, seconds=20)
    node_pay = done.settlement.node_pay
    sender, _ = _crashing_sender(m, when)
    with pytest.raises(Killed):
        await sender.pass_once()
    [row] = _rows(m)
    assert row.status is OutboxStatus.SENT and row.signature  # recorded before sending
    landed = await m.backend.chain.confirmed(row.signature)
    assert landed is (when == "after_send")
    assert await m.token_balance(m.node.pubkey) == (node_pay if landed else 0)

    restarted = Sender(m.store, m.backend.settlement, retry_after_s=0)  # a new process
    stats = await restarted.pass_once()
    assert stats.confirmed == 1
    assert stats.resubmitted == (0 if landed else 1)  # only what had no confirmed signature
    [row2] = _rows(m)
    assert row2.status is OutboxStatus.CONFIRMED and row2.signature == row.signature
    assert await m.token_balance(m.node.pubkey) == node_pay  # once, never twice
    assert (await restarted.pass_once()).transactions == 0
    assert await m.token_balance(m.node.pubkey) == node_pay
    assert (await solana_wallet.verify_onchain(m.alice)).ok


async def test_an_expired_unsent_transaction_is_rebuilt_not_duplicated(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await m.fund(m.alice, approve=5 * NOS)
    await m.backend.settlement.ensure_account(m.node.pubkey)
    done = await m.run_job(m.alice, seconds=20)
    sender, _ = _crashing_sender(m, "before_send")
    with pytest.raises(Killed):
        await sender.pass_once()
    [old] = _rows(m)
    m.backend.chain.svm.expire_blockhash()  # type: ignore[attr-defined]
    stats = await Sender(m.store, m.backend.settlement, retry_after_s=0).pass_once()
    assert stats.rebuilt == 1 and stats.confirmed == 1
    [row] = _rows(m)
    assert row.signature != old.signature and row.attempts == 2
    assert not await m.backend.chain.confirmed(old.signature or "")
    assert await m.token_balance(m.node.pubkey) == done.settlement.node_pay


async def test_a_crash_before_the_journal_commit_leaves_no_payout(
    chain_market: ChainMarket,
) -> None:
    """The outbox row is written in the settle entry's transaction: roll one back, and
    neither exists."""
    m = chain_market
    await m.fund(m.alice, approve=5 * NOS)
    from nosgrid.coordinator.services import jobs as svc

    job = await m.alice.post_job(spec={"version": "0.1", "type": "container", "ops": [
        {"type": "container/run", "id": "x", "args": {"image": "i", "cmd": "true"}}]},
        market="cpu", timeout=50)
    with m.store.uow() as uow:
        svc.cancel_job(uow, job.id, m.alice.pubkey, int(m.clock()))
        # no commit: the process dies here
    assert _rows(m) == []
    with m.store.uow(write=False) as uow:
        assert uow.jobs.get(job.id).state.value == "queued"


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["job", "approve", "cancel", "send", "fail"]),
                                st.integers(1, 90)), min_size=1, max_size=10))
def test_onchain_balances_equal_ledger_balances_after_random_sequences(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    asyncio.run(_random_sequence(tmp_path_factory.mktemp("seq"), steps))


async def _random_sequence(tmp: Path, steps: list[tuple[str, int]]) -> None:
    m = await open_chain_market(tmp, batch_size=3)
    try:
        await m.fund(m.alice, "100", approve=2 * NOS)
        paid = 0
        for action, n in steps:
            if action == "approve":
                await solana_wallet.approve(m.alice, n * 50_000)
            elif action in ("job", "cancel", "fail"):
                try:
                    job = await m.alice.post_job(spec={"version": "0.1", "type": "container",
                                                       "ops": [{"type": "container/run",
                                                                "id": "x", "args": {
                                                                    "image": "i",
                                                                    "cmd": "true"}}]},
                                                 market="cpu", timeout=100)
                except AllowanceTooSmall as err:
                    assert "approve" in str(err)
                    continue
                if action == "cancel":
                    await m.alice.cancel(job.id)
                    continue
                await m.node.poll(wait=0)
                await m.node.start_job(job.id)
                m.clock.t += n
                if action == "fail":
                    done = await m.node.fail_job(job.id, reason="exit 1", fault="client",
                                                 seconds_used=n)
                else:
                    done = await m.node.finish_job(job.id, seconds_used=n, exit_code=0)
                paid += done.settlement.node_pay
            else:
                await m.send()
        await solana_wallet.approve(m.alice, 10 * NOS)  # whatever was revoked, pay it all
        await m.send()
        report = await solana_wallet.verify_onchain(m.alice)
        assert report.ok, report.problems
        for row in report.accounts_checked:
            assert row.onchain == row.expected_onchain, row
        assert report.outbox == {}
        assert await m.token_balance(m.node.pubkey) == paid
    finally:
        await m.close()
