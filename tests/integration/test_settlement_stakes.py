"""Stakes on LiteSVM: deposits, withdrawals, claims and slashes move real NOS in and out of
the stake and rewards vaults through the outbox, exactly once, and ``verify --onchain``
reconciles the stake vault with the ``stake:*`` ledger accounts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from settlement_fixtures import BUSYBOX_SPEC, NOS, ChainMarket, chain_market
from solders.instruction import Instruction
from solders.keypair import Keypair

from nosgrid.coordinator.services import economics
from nosgrid.core.ledger import stake_vault, wallet
from nosgrid.core.slashing import Offence
from nosgrid.core.staking import DAY
from nosgrid.sdk import solana as solana_wallet
from nosgrid.sdk.client import AsyncClient
from nosgrid.sdk.models import JobView, OnchainVerifyReport
from nosgrid.settlement.chain import PreparedTransaction
from nosgrid.settlement.errors import AllowanceTooSmall
from nosgrid.settlement.litesvm_chain import LiteSVMChain
from nosgrid.settlement.sender import Sender
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxRow, OutboxStatus

__all__ = ["chain_market"]


class Killed(BaseException):
    """The sender process dies here (not an Exception: nothing may catch it)."""


class CrashingChain(LiteSVMChain):
    """The same SVM, but the process 'dies' before or after the next submit."""

    def __init__(self, inner: LiteSVMChain, when: str) -> None:
        super().__init__(inner.svm)
        self.when = when

    async def prepare(self, instructions: Sequence[Instruction], signers: Sequence[Keypair],
                      payer: Keypair) -> PreparedTransaction:
        return await super().prepare(instructions, signers, payer)

    async def submit(self, prepared: PreparedTransaction) -> str:
        if self.when == "before_send":
            raise Killed
        signature = await super().submit(prepared)
        if signature:  # after_send: it landed, the process died before recording it
            raise Killed
        return signature


def _crashing_sender(m: ChainMarket, when: str) -> Sender:
    s = m.backend.settlement
    crashing = type(s)(CrashingChain(m.backend.chain, when),  # type: ignore[arg-type]
                       mint=s.mint, authority=s.signer, treasury=s.treasury,
                       stake_vault=s.stake_vault, rewards_vault=s.rewards_vault)
    return Sender(m.store, crashing, retry_after_s=0)


async def _stake(c: AsyncClient, action: str, **body: Any) -> dict[str, Any]:
    return dict(await c.request("POST", "/v1/stake", json_body={"action": action, **body}))


async def _vault(m: ChainMarket, which: str = "stake") -> int:
    s = m.backend.settlement
    key = str(s.stake_vault if which == "stake" else s.rewards_vault if which == "rewards"
              else s.treasury)
    return (await s.balances([key]))[key]


def _rows(m: ChainMarket, kind: OutboxKind | None = None) -> list[OutboxRow]:
    with m.store.uow(write=False) as uow:
        rows = OutboxRepo(uow.conn).unconfirmed() + OutboxRepo(uow.conn).in_status(
            OutboxStatus.CONFIRMED)
    return [r for r in rows if kind is None or r.kind is kind]


def _ledger(m: ChainMarket, account: str) -> int:
    with m.store.uow(write=False) as uow:
        return uow.ledger.balance(account)


async def _verified(m: ChainMarket) -> OnchainVerifyReport:
    report = await solana_wallet.verify_onchain(m.alice)
    assert report.ok, report.problems
    return report


async def test_stake_moves_exactly_the_ledger_amount_into_the_vault(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await m.fund(m.node, "100", approve=10 * NOS)
    await _stake(m.node, "stake", amount="4", days=30)
    await _stake(m.node, "top_up", amount="1.5")
    assert _ledger(m, stake_vault(m.node.pubkey)) == 5_500_000
    assert _ledger(m, wallet(m.node.pubkey)) == 10 * NOS - 5_500_000
    assert await _vault(m) == 0  # committed, not yet sent
    await _verified(m)  # pending deposits count as reserved allowance / vault inflow

    stats = await m.send()
    assert stats.stake_moves == 2 and stats.transactions == 2
    assert await _vault(m) == 5_500_000
    assert await m.token_balance(m.node.pubkey) == 100 * NOS - 5_500_000
    assert await m.backend.settlement.allowance(m.node.pubkey) == 10 * NOS - 5_500_000
    [first, _] = _rows(m, OutboxKind.STAKE_DEPOSIT)
    logs = m.backend.chain.logs(first.signature)  # type: ignore[attr-defined]
    assert any(f"nosgrid stake owner={m.node.pubkey} entry={first.entry_hash}" in line
               for line in logs)
    report = await _verified(m)
    vault_row = next(r for r in report.accounts_checked if r.account == "stake:*")
    assert vault_row.onchain == vault_row.ledger == 5_500_000


async def test_a_stake_beyond_the_allowance_is_refused_and_changes_nothing(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await m.fund(m.node, "100", approve=NOS)
    before = await m.node.ledger_verify()
    with pytest.raises(AllowanceTooSmall, match="nosgrid wallet approve"):
        await _stake(m.node, "stake", amount="5", days=30)
    assert (await m.node.ledger_verify()).entries == before.entries
    assert (await m.node.request("GET", "/v1/stake"))["staked"] is False
    assert _rows(m) == []
    assert (await m.send()).transactions == 0
    assert await _vault(m) == 0 and await m.token_balance(m.node.pubkey) == 100 * NOS
    await _verified(m)


async def test_unstake_and_withdraw_move_the_unlocked_part_back(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await m.fund(m.node, "100", approve=10 * NOS)
    await _stake(m.node, "stake", amount="8", days=14)
    await m.send()
    await _stake(m.node, "unstake")
    assert (await m.send()).transactions == 0  # unstaking starts the unlock, moves nothing
    m.clock.t += 7 * DAY  # half unlocked
    view = await _stake(m.node, "withdraw")
    assert view["amount"] == 4 * NOS
    assert await m.token_balance(m.node.pubkey) == 92 * NOS
    await _verified(m)  # the withdrawal is pending: still in the vault, not in the ledger
    assert (await m.send()).stake_moves == 1
    assert await _vault(m) == 4 * NOS
    assert await m.token_balance(m.node.pubkey) == 96 * NOS
    # back in the staker's own account, outside the market: the allowance did not grow
    assert _ledger(m, wallet(m.node.pubkey)) == 2 * NOS
    m.clock.t += 7 * DAY
    await _stake(m.node, "withdraw")
    await m.send()
    assert await _vault(m) == 0 and await m.token_balance(m.node.pubkey) == 100 * NOS
    [row, _] = _rows(m, OutboxKind.STAKE_WITHDRAW)
    logs = m.backend.chain.logs(row.signature)  # type: ignore[attr-defined]
    assert any(f"nosgrid unstake owner={m.node.pubkey}" in line for line in logs)
    await _verified(m)


async def _missed_deadline(m: ChainMarket) -> JobView:
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 100
    await m.node.heartbeat()
    assert m.coord.maintenance()["expired"] == 1
    return job


async def test_a_missed_deadline_slash_moves_to_the_treasury_with_evidence(
    chain_market: ChainMarket,
) -> None:
    m = chain_market
    await m.fund(m.node, "200", approve=150 * NOS)
    await m.fund(m.alice, approve=5 * NOS)
    await _stake(m.node, "stake", amount="100", days=30)
    await m.send()
    treasury_before = await _vault(m, "treasury")
    job = await _missed_deadline(m)
    slashed = 100 * NOS - _ledger(m, stake_vault(m.node.pubkey))
    assert slashed == NOS  # 1 % of the stake
    await _verified(m)
    assert (await m.send()).stake_moves == 1
    assert await _vault(m) == 99 * NOS
    assert await _vault(m, "treasury") - treasury_before == slashed
    [row] = _rows(m, OutboxKind.SLASH)
    assert row.job_id == job.id and row.status is OutboxStatus.CONFIRMED
    logs = m.backend.chain.logs(row.signature)  # type: ignore[attr-defined]
    memo = f"nosgrid slash node={m.node.pubkey} job={job.id} entry={row.entry_hash}"
    assert any(memo in line for line in logs)
    with m.store.uow(write=False) as uow:
        entry = next(e for e in uow.ledger.entries() if e.hash == row.entry_hash)
    assert entry.kind == "slash" and entry.meta["job_id"] == job.id
    await _verified(m)


async def test_a_challengers_part_goes_to_their_own_account(chain_market: ChainMarket) -> None:
    m = chain_market
    await m.fund(m.node, "200", approve=150 * NOS)
    await m.fund(m.alice, approve=5 * NOS)
    await _stake(m.node, "stake", amount="100", days=30)
    await m.send()
    done = await m.run_job(m.alice, seconds=10)
    challenger = m.client()
    with m.store.uow() as uow:
        job = uow.jobs.get(done.id)
        evidence = uow.ledger.entries()[-1].hash
        amount = economics.slash_for(uow, job, Offence.WRONG_RESULT, int(m.clock()),
                                     journal_hash=evidence, challenger=challenger.pubkey)
        uow.commit()
    [row] = _rows(m, OutboxKind.SLASH)
    legs = {leg.account: leg.amount for leg in row.legs}
    to_challenger = legs[wallet(challenger.pubkey)]
    assert sum(legs.values()) == amount and to_challenger > 0
    await m.send()  # the payout, then the slash (the challenger's account is created)
    assert await m.token_balance(challenger.pubkey) == to_challenger
    assert await _vault(m) == 100 * NOS - amount
    assert _ledger(m, wallet(challenger.pubkey)) == 0  # paid out: outside the market
    await _verified(m)
    await challenger.aclose()


async def test_claimed_rewards_leave_the_rewards_vault(chain_market: ChainMarket) -> None:
    m = chain_market
    await m.fund(m.node, "100", approve=10 * NOS)
    await m.fund(m.alice, approve=5 * NOS)
    await _stake(m.node, "stake", amount="5", days=14)
    done = await m.run_job(m.alice, seconds=50)
    await m.send()
    share = done.settlement.stakers_fee
    assert await _vault(m, "rewards") == share > 0
    res = await m.node.request("POST", "/v1/rewards/claim")
    claimed = res["claimed"]
    assert 0 < claimed <= share
    await _verified(m)
    before = await m.token_balance(m.node.pubkey)
    assert (await m.send()).stake_moves == 1
    assert await _vault(m, "rewards") == share - claimed
    assert await m.token_balance(m.node.pubkey) - before == claimed
    await _verified(m)


async def test_a_withdrawal_waits_for_the_stakes_deposit(chain_market: ChainMarket) -> None:
    """The staker revokes the approval before the deposit is sent: the vault never pays
    out a stake it has not received, and verify says the client must approve again."""
    m = chain_market
    await m.fund(m.node, "100", approve=10 * NOS)
    await _stake(m.node, "stake", amount="4", days=14)
    await solana_wallet.approve(m.node, 0)
    await _stake(m.node, "unstake")
    m.clock.t += 14 * DAY
    await _stake(m.node, "withdraw")
    stats = await m.send()
    assert stats.stake_moves == 0 and "approve" in stats.errors[0]
    [withdraw] = _rows(m, OutboxKind.STAKE_WITHDRAW)
    assert withdraw.status is OutboxStatus.PENDING and "waiting" in withdraw.error
    report = await solana_wallet.verify_onchain(m.alice)
    assert not report.ok and any("approve more" in p for p in report.problems)
    await solana_wallet.approve(m.node, 10 * NOS)
    assert (await m.send()).stake_moves == 2  # deposit first, then the withdrawal
    assert await _vault(m) == 0 and await m.token_balance(m.node.pubkey) == 100 * NOS
    await _verified(m)


@pytest.mark.parametrize("when", ["before_send", "after_send"])
@pytest.mark.parametrize("move", ["stake", "slash"])
async def test_a_killed_sender_moves_a_stake_exactly_once(
    chain_market: ChainMarket, when: str, move: str
) -> None:
    m = chain_market
    await m.fund(m.node, "200", approve=150 * NOS)
    await m.fund(m.alice, approve=5 * NOS)
    await _stake(m.node, "stake", amount="100", days=30)
    kind = OutboxKind.STAKE_DEPOSIT
    if move == "slash":
        await m.send()
        await _missed_deadline(m)
        kind = OutboxKind.SLASH
    vault_before = await _vault(m)
    with pytest.raises(Killed):
        await _crashing_sender(m, when).pass_once()
    [row] = _rows(m, kind)
    assert row.status is OutboxStatus.SENT and row.signature  # recorded before sending
    landed = await m.backend.chain.confirmed(row.signature)
    assert landed is (when == "after_send")
    delta = 100 * NOS if move == "stake" else -NOS

    restarted = Sender(m.store, m.backend.settlement, retry_after_s=0)  # a new process
    stats = await restarted.pass_once()
    assert stats.confirmed == 1 and stats.resubmitted == (0 if landed else 1)
    [again] = _rows(m, kind)
    assert again.status is OutboxStatus.CONFIRMED and again.signature == row.signature
    assert await _vault(m) == vault_before + delta  # once, never twice
    assert (await restarted.pass_once()).transactions == 0
    assert await _vault(m) == vault_before + delta
    await _verified(m)
