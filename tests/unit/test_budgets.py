"""The rules of request budgets and of the queue's order, as invariants."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.budgets import (
    ROUTE_CLASSES,
    STAKE_UNIT,
    TokenBucket,
    retry_after_header,
    route_class,
    standing_multiplier,
)
from nosgrid.core.jobs.queueing import (
    MAX_HEAD_START_S,
    client_reputation,
    head_start,
    offered_share,
    queue_at,
)

RATES = st.floats(0.1, 1_000)
CAPS = st.floats(1, 10_000)
STEPS = st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 3)), max_size=60)


@given(RATES, CAPS, STEPS)
def test_a_bucket_never_grants_more_than_burst_plus_rate_times_time(
        rate: float, cap: float, steps: list[tuple[float, float]]) -> None:
    bucket, now, granted = TokenBucket.full(cap, 0.0), 0.0, 0.0
    for dt, cost in steps:
        now += dt
        before = bucket
        bucket, wait = bucket.take(rate=rate, capacity=cap, now=now, cost=cost)
        if wait == 0.0:
            granted += cost
        else:  # a refusal takes nothing, and says how long until the cost is there
            assert bucket.tokens >= before.tokens - 1e-9
            assert wait > 0 and bucket.tokens + wait * rate >= cost - 1e-6
        assert 0.0 <= bucket.tokens <= cap + 1e-9
    assert granted <= cap + rate * now + 1e-6


@given(st.integers(0, 10**17), st.integers(0, 10**17), st.floats(0, 1), st.floats(0, 1))
def test_the_multiplier_grows_with_stake_and_reputation_and_is_capped(
        s1: int, s2: int, r1: float, r2: float) -> None:
    lo_s, hi_s = sorted((s1, s2))
    lo_r, hi_r = sorted((r1, r2))
    assert 1.0 <= standing_multiplier(lo_s, lo_r) <= standing_multiplier(hi_s, hi_r) <= 8.0


def test_doubling_the_stake_is_dearer_each_time() -> None:
    gains = [standing_multiplier(STAKE_UNIT * 2**k, 0.0, cap=100) for k in range(5)]
    assert all(b - a <= 1.0 + 1e-9 for a, b in itertools.pairwise(gains))


def test_route_classes() -> None:
    assert route_class("GET", "/healthz") is None
    assert route_class("POST", "/v1/jobs/batch") == "post"
    assert route_class("POST", "/v1/jobs/abc/finish") == "report"
    assert route_class("POST", "/v1/nodes/heartbeat") == "report"
    assert route_class("GET", "/v1/jobs/abc/logs", streaming=True) == "stream"
    assert route_class("POST", "/openai/v1/chat/completions") == "gateway"
    assert route_class("PUT", "/v1/blobs/" + "0" * 64) == "blob"
    assert route_class("POST", "/v1/jobs/abc/cancel") == "write"
    assert set(ROUTE_CLASSES) >= {"post", "poll", "read", "report", "blob", "gateway",
                                  "stream", "write"}
    assert retry_after_header(0.01) == "1" and retry_after_header(2.5) == "3"


@given(st.floats(-1, 2), st.floats(-1, 2))
def test_a_head_start_is_bounded(offered: float, rep: float) -> None:
    assert 0 <= head_start(offered=offered, client_reputation=rep) <= MAX_HEAD_START_S


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.floats(0, 1), st.floats(0, 1),
       st.floats(0, 1), st.floats(0, 1), st.integers(0, 10_000))
def test_an_old_job_is_ahead_of_every_job_posted_long_enough_after_it(
        t_old: int, gap: int, o1: float, r1: float, o2: float, r2: float, extra: int) -> None:
    """No starvation: whatever a newcomer offers, a job posted MAX_HEAD_START_S earlier
    (or more) is served first."""
    old = queue_at(t_old, head_start(offered=o1, client_reputation=r1))
    t_new = t_old + MAX_HEAD_START_S + extra
    new = queue_at(t_new, head_start(offered=o2, client_reputation=r2))
    assert old <= new


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_the_client_record_is_a_fraction_that_cancelling_lowers(done: int, cancelled: int) -> None:
    r = client_reputation(done, cancelled)
    assert 0 < r < 1
    assert client_reputation(done, cancelled + 1) < r < client_reputation(done + 1, cancelled)
    assert offered_share(5, 10) == 0.5 and offered_share(1, 0) == 1.0
