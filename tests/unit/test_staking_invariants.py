"""Supply invariants under random staking, fees, claims, emissions and slashes.

A hypothesis state machine drives the pure rules over a dict ledger: every action's
postings go through ``check_postings`` (an action whose postings would overdraw an
account is rejected whole, as the service's transaction would be). Whatever happens, the
supply is unchanged, no account but genesis is negative, each stake vault holds exactly
the account's amount, and the stakers' pool covers every staker's pending rewards.
"""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from nosgrid.core import slashing as sl
from nosgrid.core import staking as sk
from nosgrid.core import tokenomics as tk
from nosgrid.core.errors import InsufficientFunds, NosgridError
from nosgrid.core.ledger import (
    GENESIS,
    REWARDS_POOL,
    STAKERS_POOL,
    Posting,
    check_postings,
    genesis_entry,
    replay,
    stake_vault,
    wallet,
)
from nosgrid.core.money import BASE_UNITS_PER_NOS, TOTAL_SUPPLY

NOS = BASE_UNITS_PER_NOS
OWNERS = ["n1", "n2", "n3"]
PARAMS = tk.EconomicParams()


class StakingMachine(RuleBasedStateMachine):
    @initialize()
    def genesis(self) -> None:
        self.balances = replay([genesis_entry(tk.allocations(PARAMS), at=0)])
        self.pool = sk.RewardPool()
        self.accounts: dict[str, sk.StakeAccount] = {}
        self.history: dict[str, sl.OffenceHistory] = {}
        self.now = 1_000
        self.epoch = 0

    def _apply(self, postings: tuple[Posting, ...] | list[Posting]) -> bool:
        try:
            self.balances.update(check_postings(self.balances, postings))
        except InsufficientFunds:
            return False
        return True

    def _result(self, r: sk.StakeResult) -> None:
        if self._apply(r.postings):
            self.pool, self.accounts[r.account.owner] = r.pool, r.account

    @rule(owner=st.sampled_from(OWNERS), amount=st.integers(1, 10**6 * NOS))
    def fund(self, owner: str, amount: int) -> None:
        self._apply([Posting("alloc:community", wallet(owner), amount)])

    @rule(owner=st.sampled_from(OWNERS), amount=st.integers(0, 10**6 * NOS),
          days=st.integers(0, 400))
    def stake(self, owner: str, amount: int, days: int) -> None:
        with contextlib.suppress(NosgridError):
            self._result(sk.stake(self.pool, self.accounts.get(owner), owner, amount, days,
                                  self.now))

    @rule(owner=st.sampled_from(OWNERS), amount=st.integers(1, 10**5 * NOS))
    def top_up(self, owner: str, amount: int) -> None:
        with contextlib.suppress(NosgridError):
            self._result(sk.top_up(self.pool, self.accounts.get(owner), amount, self.now))

    @rule(owner=st.sampled_from(OWNERS),
          action=st.sampled_from(["unstake", "restake", "withdraw", "claim"]))
    def act(self, owner: str, action: str) -> None:
        fn = {"unstake": sk.unstake, "restake": sk.restake, "withdraw": sk.withdraw,
              "claim": sk.claim_rewards}[action]
        with contextlib.suppress(NosgridError):
            self._result(fn(self.pool, self.accounts.get(owner), self.now))

    @rule(seconds=st.integers(0, 400 * sk.DAY))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @rule(gross=st.integers(0, 10**6 * NOS), fee_bps=st.integers(0, 10_000),
          share=st.integers(0, 10_000))
    def job_fee(self, gross: int, fee_bps: int, share: int) -> None:
        # a settled job's stakers' share arrives in the pool, then the accumulator learns it
        split = tk.fee_split(gross, fee_bps, share)
        if split.stakers and self._apply([Posting("alloc:community", STAKERS_POOL,
                                                   split.stakers)]):
            self.pool = sk.distribute_fees(self.pool, split.stakers, self.now).pool

    @rule(secs=st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 10**8), max_size=3))
    def emission(self, secs: dict[str, int]) -> None:
        e = tk.epoch_emission(self.epoch, secs, PARAMS,
                              pool_balance=self.balances.get(REWARDS_POOL, 0))
        assert self._apply(e.postings)
        self.epoch += 1

    @rule(owner=st.sampled_from(OWNERS), offence=st.sampled_from(list(sl.Offence)),
          price=st.integers(0, 10**4 * NOS), challenger=st.sampled_from([None, "auditor"]))
    def slash(self, owner: str, offence: sl.Offence, price: int, challenger: str | None) -> None:
        acct = self.accounts.get(owner)
        if acct is None:
            return
        ev = (sl.Evidence(reports=("1" * 64, "2" * 64))
              if sl.SLASHING_TABLE[offence].needs_reports
              else sl.Evidence(journal_hash="0" * 64, job_id="job-1"))
        cmd = sl.SlashNode(owner, offence, ev, self.now, job_price=price, challenger=challenger)
        r = sl.slash(self.pool, acct, self.history.get(owner, sl.OffenceHistory()), cmd)
        assert r.amount <= acct.amount
        assert sum(p.amount for p in r.postings) == r.amount
        assert self._apply(r.postings)
        self.pool, self.accounts[owner], self.history[owner] = r.pool, r.account, r.history

    @invariant()
    def supply_is_conserved(self) -> None:
        assert sum(self.balances.values()) == 0
        assert -self.balances[GENESIS] == TOTAL_SUPPLY
        assert all(v >= 0 for k, v in self.balances.items() if k != GENESIS)

    @invariant()
    def vaults_match_accounts(self) -> None:
        for owner, acct in self.accounts.items():
            assert self.balances.get(stake_vault(owner), 0) == acct.amount
            assert acct.score == (0 if not acct.active else
                                  acct.amount * acct.multiplier_bps // 10_000)
        assert self.pool.total_score == sum(a.score for a in self.accounts.values())

    @invariant()
    def stakers_pool_covers_rewards(self) -> None:
        held = self.balances.get(STAKERS_POOL, 0)
        assert held == self.pool.total_funded - self.pool.total_claimed
        pending = sum(sk.pending_rewards(self.pool, a) for a in self.accounts.values())
        assert pending <= held
        assert held - pending - self.pool.undistributed <= len(self.accounts) + 1

    @invariant()
    def emission_within_reserve(self) -> None:
        emitted = tk.reserve_amount(PARAMS) - tk.reserve_after(self.epoch, PARAMS)
        assert self.balances[tk.RESERVE] == tk.reserve_amount(PARAMS) - emitted


StakingMachine.TestCase.settings = settings(StakingMachine.TestCase.settings,
                                            stateful_step_count=20)
TestStakingMachine = StakingMachine.TestCase
