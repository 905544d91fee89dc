"""The job state machine: the table, each transition, and illegal moves."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nosgrid.core.errors import IllegalTransition, InvalidInput
from nosgrid.core.jobs import state as rules
from nosgrid.core.jobs.state import TRANSITIONS, JobState
from nosgrid.core.jobs.terms import JobTerms
from nosgrid.core.markets import MarketParams

MARKET = MarketParams(name="gpu", price_per_second=100, max_timeout=1000, fee_bps=1000)


def posted(timeout: int = 100, max_price: int | None = None) -> rules.Job:
    return rules.post(job_id="j", client="c", market=MARKET, spec_hash="h",
                      terms=JobTerms("gpu", timeout, max_price), now=0).job


def test_post_escrows_price_times_timeout_capped_by_max_price() -> None:
    tr = rules.post(job_id="j", client="c", market=MARKET, spec_hash="h",
                    terms=JobTerms("gpu", 100), now=0)
    assert tr.job.deposit == 10_000 and tr.job.state is JobState.QUEUED
    assert [(p.src, p.dst, p.amount) for p in tr.postings] == [("wallet:c", "escrow:j", 10_000)]
    assert posted(max_price=500).deposit == 500
    with pytest.raises(InvalidInput, match="timeout"):
        posted(timeout=1001)


def test_happy_path_and_payout() -> None:
    job = rules.assign(posted(), "n", 1).job
    job = rules.start(job, 2).job
    assert job.deadline == 102
    job = rules.complete(job, 52, seconds_used=50).job
    tr = rules.settle(job, 53)
    moves = {p.dst: p.amount for p in tr.postings}
    assert moves == {"wallet:n": 4_500, "treasury": 500, "wallet:c": 5_000}
    assert tr.job.state is JobState.SETTLED
    assert tr.events[0].name == "JobSettled"


def test_seconds_used_cannot_exceed_wall_time_or_timeout() -> None:
    job = rules.start(rules.assign(posted(), "n", 0).job, 10).job
    assert rules.complete(job, 20, seconds_used=999).job.seconds_used == 11
    assert rules.complete(job, 500, seconds_used=None).job.seconds_used == 100


@pytest.mark.parametrize(
    ("fault", "node_paid"), [("client", True), ("node", False)])
def test_failure_rule(fault: rules.Fault, node_paid: bool) -> None:
    job = rules.start(rules.assign(posted(), "n", 0).job, 0).job
    job = rules.fail(job, 10, fault=fault, reason="exit 1", seconds_used=10).job
    pay = rules.payout(job)
    assert (pay.node_pay > 0) is node_paid
    assert pay.total == job.deposit


def test_stakers_share_comes_out_of_the_fee() -> None:
    market = MARKET.model_copy(update={"stakers_share_bps": 2_500})
    job = rules.post(job_id="j", client="c", market=market, spec_hash="h",
                     terms=JobTerms("gpu", 100), now=0).job
    job = rules.complete(rules.start(rules.assign(job, "n", 0).job, 0).job, 100, 100).job
    pay = rules.payout(job)
    assert (pay.node_pay, pay.treasury_fee, pay.stakers_fee, pay.refund) == (9000, 750, 250, 0)


def test_every_state_outside_the_table_is_illegal() -> None:
    base = posted()
    for action, (allowed, _target) in TRANSITIONS.items():
        for state in JobState:
            job = replace(base, state=state, node="n", started_at=0)
            assert rules.can(job, action) is (state in allowed)
            if state not in allowed and action in ("assign", "start", "cancel", "requeue"):
                fn = {"assign": lambda j: rules.assign(j, "n", 1),
                      "start": lambda j: rules.start(j, 1),
                      "cancel": lambda j: rules.cancel(j, 1),
                      "requeue": lambda j: rules.requeue(j, 1, "x")}[action]
                with pytest.raises(IllegalTransition, match=state.value):
                    fn(job)


def test_requeue_keeps_escrow_and_clears_node() -> None:
    job = rules.start(rules.assign(posted(), "n", 0).job, 1).job
    tr = rules.requeue(job, 5, "node died")
    assert tr.job.state is JobState.QUEUED and tr.job.node is None and not tr.postings
    assert tr.job.attempts == 1
