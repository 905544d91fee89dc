"""Replays the golden scenarios in tests/scenarios/ against the pure rules or the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nosgrid.core.errors import NosgridError
from nosgrid.core.jobs import state as rules
from nosgrid.core.jobs.state import DELIVERED_WORK, Job, JobState, Transition
from nosgrid.core.jobs.terms import JobTerms
from nosgrid.core.ledger import (
    Posting,
    check_postings,
    default_allocations,
    genesis_entry,
    replay,
)
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import parse_nos

#: the definition the scenarios post (a scenario is about money and states, not containers)
DEFINITION = {"version": "0.1", "type": "container",
              "ops": [{"type": "container/run", "id": "main", "args": {"image": "busybox"}}]}
SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


class PureDriver:
    """Runs a scenario on the rules alone: a balance dict and Job objects."""

    def __init__(self, market: MarketParams, client_funds: int) -> None:
        self.market = market
        self.balances = replay([genesis_entry(default_allocations(), at=0)])
        self.jobs: dict[str, Job] = {}
        self.balances.update(check_postings(
            self.balances, [Posting("alloc:community", "wallet:CLIENT", client_funds)]))

    def _apply(self, tr: Transition) -> Job:
        self.balances.update(check_postings(self.balances, tr.postings))
        if tr.job.id:
            self.jobs[tr.job.id] = tr.job
        return tr.job

    def _settle_if_done(self, job: Job, at: int) -> None:
        if job.state in rules.ENDED and rules.can(job, "settle"):
            self._apply(rules.settle(job, at))

    def step(self, s: dict[str, Any]) -> None:
        at, do = int(s["at"]), s["do"]
        if do == "post":
            max_price = parse_nos(s["max_price"]) if s.get("max_price") else None
            tr = rules.post(job_id=s["job"], client="CLIENT", market=self.market,
                            spec_hash="0" * 64,
                            terms=JobTerms(self.market.name, s["timeout"], max_price), now=at)
            self._apply(tr)
            return
        if do == "expire":
            for job in list(self.jobs.values()):
                if (job.state is JobState.RUNNING and job.deadline is not None
                        and at > job.deadline + 30):
                    self._settle_if_done(self._apply(rules.time_out(job, at, fault="node")), at)
            return
        job = self.jobs[s["job"]]
        actions: dict[str, Callable[[], Transition]] = {
            "assign": lambda: rules.assign(job, s.get("node", "NODE"), at),
            "requeue": lambda: rules.requeue(job, at, "the node stopped sending heartbeats"),
            "start": lambda: rules.start(job, at),
            "complete": lambda: rules.complete(job, at, s.get("seconds_used")),
            "fail": lambda: rules.fail(job, at, fault=s["fault"], reason="failed",
                                       seconds_used=s.get("seconds_used")),
            "cancel": lambda: rules.cancel(job, at),
        }
        self._settle_if_done(self._apply(actions[do]()), at)

    def state_of(self, job_id: str) -> str | None:
        job = self.jobs.get(job_id)
        return None if job is None else job.state.value

    def balance(self, account: str) -> int:
        return self.balances.get(account, 0)

    def outcome_of(self, job_id: str) -> str | None:
        outcome = self.jobs[job_id].outcome
        return None if outcome is None else outcome.value

    def compute_seconds(self) -> dict[str, int]:
        """Delivered seconds per node, as emissions count them."""
        out: dict[str, int] = {}
        for j in self.jobs.values():
            if j.state is JobState.SETTLED and j.outcome in DELIVERED_WORK and j.node:
                out[j.node] = out.get(j.node, 0) + j.seconds_used
        return out


def run(path: Path, make_driver: Callable[[MarketParams, int], Any]) -> Any:
    """Run every step, checking expected errors, then the expected end state."""
    sc = load(path)
    driver = make_driver(MarketParams(**sc["market"]), parse_nos(sc["client_funds"]))
    for s in sc["steps"]:
        before = {a: driver.balance(a) for a in sc["expect"]["balances"]}
        if "error" in s:
            try:
                driver.step(s)
            except NosgridError as err:
                assert err.code == s["error"], f"{path.name}: {s} raised {err.code}"
            else:
                raise AssertionError(f"{path.name}: step {s} should fail with {s['error']}")
            after = {a: driver.balance(a) for a in sc["expect"]["balances"]}
            assert before == after, f"{path.name}: failed step {s} changed balances"
        else:
            driver.step(s)
    for job_id, state in sc["expect"]["jobs"].items():
        assert driver.state_of(job_id) == state, f"{path.name}: {job_id}"
    for job_id in sc["expect"].get("missing_jobs", []):
        assert driver.state_of(job_id) is None, f"{path.name}: {job_id} should not exist"
    for account, amount in sc["expect"]["balances"].items():
        assert driver.balance(account) == parse_nos(amount), f"{path.name}: {account}"
    for job_id, outcome in sc["expect"].get("outcomes", {}).items():
        assert driver.outcome_of(job_id) == outcome, f"{path.name}: outcome of {job_id}"
    if "compute_seconds" in sc["expect"]:
        assert driver.compute_seconds() == sc["expect"]["compute_seconds"], \
            f"{path.name}: compute seconds per node"
    return driver
