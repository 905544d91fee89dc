"""Ledger invariants under random sequences of job commands (hypothesis state machine).

Whatever clients and nodes do — fund, post, assign, start, complete, fail, time out,
cancel, requeue, in any order, illegal ones included — the sum over all accounts is the
minted supply, no account but genesis goes negative, the chain verifies, and replaying
the journal rebuilds the balances.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from nosgrid.core.errors import NosgridError
from nosgrid.core.jobs import state as rules
from nosgrid.core.jobs.state import Job, Transition
from nosgrid.core.jobs.terms import JobTerms
from nosgrid.core.ledger import (
    GENESIS,
    JournalEntry,
    Posting,
    check_postings,
    default_allocations,
    genesis_entry,
    make_entry,
    replay,
    verify,
)
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import TOTAL_SUPPLY

CLIENTS = ["alice", "bob"]
NODES = ["n1", "n2"]
MARKET = MarketParams(name="cpu", price_per_second=1_000, max_timeout=600, fee_bps=700,
                      stakers_share_bps=2_000)


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def genesis(self) -> None:
        self.entries: list[JournalEntry] = [genesis_entry(default_allocations(), at=0)]
        self.balances = replay(self.entries)
        self.jobs: dict[str, Job] = {}
        self.now = 1_000

    def _append(self, kind: str, postings: tuple[Posting, ...] | list[Posting]) -> None:
        new = check_postings(self.balances, postings)  # raises before anything changes
        head = self.entries[-1]
        self.entries.append(make_entry(seq=head.seq + 1, prev_hash=head.hash, kind=kind,
                                       ref="", at=self.now, postings=postings))
        self.balances.update(new)

    def _transition(self, tr: Transition) -> None:
        if tr.postings:
            self._append("job", tr.postings)
        self.jobs[tr.job.id] = tr.job
        if tr.job.state in rules.TERMINAL and tr.job.state is not rules.JobState.SETTLED:
            self._transition(rules.settle(tr.job, self.now))

    @rule(client=st.sampled_from(CLIENTS), nos=st.integers(1, 50))
    def fund(self, client: str, nos: int) -> None:
        self._append("faucet", [Posting("alloc:community", f"wallet:{client}", nos * 10**6)])

    @rule(client=st.sampled_from(CLIENTS), timeout=st.integers(1, 700),
          max_price=st.none() | st.integers(0, 10**6))
    def post(self, client: str, timeout: int, max_price: int | None) -> None:
        job_id = f"j{len(self.jobs)}"
        try:
            tr = rules.post(job_id=job_id, client=client, market=MARKET, spec_hash="h",
                            terms=JobTerms(MARKET.name, timeout, max_price), now=self.now)
            self._transition(tr)
        except NosgridError:
            assert job_id not in self.jobs

    @rule(data=st.data(), dt=st.integers(0, 400),
          action=st.sampled_from(["assign", "start", "complete", "fail_client", "fail_node",
                                  "timeout_client", "timeout_node", "cancel", "requeue"]))
    def act(self, data: st.DataObject, dt: int, action: str) -> None:
        if not self.jobs:
            return
        job = self.jobs[data.draw(st.sampled_from(sorted(self.jobs)))]
        self.now += dt
        used = data.draw(st.none() | st.integers(-5, 1000))
        node = data.draw(st.sampled_from(NODES))
        steps = {
            "assign": lambda: rules.assign(job, node, self.now),
            "start": lambda: rules.start(job, self.now),
            "complete": lambda: rules.complete(job, self.now, used),
            "fail_client": lambda: rules.fail(job, self.now, fault="client", reason="x",
                                              seconds_used=used),
            "fail_node": lambda: rules.fail(job, self.now, fault="node", reason="x"),
            "timeout_client": lambda: rules.time_out(job, self.now, fault="client"),
            "timeout_node": lambda: rules.time_out(job, self.now, fault="node"),
            "cancel": lambda: rules.cancel(job, self.now),
            "requeue": lambda: rules.requeue(job, self.now, "node gone"),
        }
        before = dict(self.balances)
        try:
            self._transition(steps[action]())
        except NosgridError:
            assert self.balances == before

    @invariant()
    def supply_is_conserved(self) -> None:
        assert sum(self.balances.values()) == 0
        assert -self.balances[GENESIS] == TOTAL_SUPPLY

    @invariant()
    def nothing_negative(self) -> None:
        assert all(v >= 0 for k, v in self.balances.items() if k != GENESIS)

    @invariant()
    def chain_verifies_and_replays(self) -> None:
        report = verify(self.entries, self.balances)
        assert report.ok, report.problems
        assert replay(self.entries) == self.balances

    @invariant()
    def escrow_holds_exactly_open_deposits(self) -> None:
        for job in self.jobs.values():
            held = self.balances.get(f"escrow:{job.id}", 0)
            assert held == (0 if job.state is rules.JobState.SETTLED else job.deposit)


LedgerMachine.TestCase.settings = settings(
    max_examples=2000 if os.environ.get("CI") else 150, stateful_step_count=30, deadline=None
)
TestLedgerInvariants = LedgerMachine.TestCase
