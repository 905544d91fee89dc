"""The deployment rules with an injected clock: cron times, extension, replacement,
billing to the first failed check, overlap, rollout and rollback."""

from __future__ import annotations

import calendar
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.deployments import (
    Deployment,
    DeploymentConfig,
    Extend,
    Note,
    Post,
    Replica,
    Stop,
    check_config,
    cron_next,
    decide,
    start_rollout,
)
from nosgrid.core.errors import InvalidInput

T0 = calendar.timegm((2026, 12, 3, 10, 0, 0))
PRICE = 10


def dep(strategy: str, **cfg: object) -> Deployment:
    config = DeploymentConfig(strategy=strategy, market="cpu", **cfg)  # type: ignore[arg-type]
    return Deployment(id="d1", owner="o", config=config, created_at=T0)


def running(job: str, *, started: int = T0, timeout: int = 600, revision: int = 1,
            healthy: bool | None = True, since: int | None = None,
            replaces: str | None = None) -> Replica:
    return Replica(job_id=job, revision=revision, state="running", started_at=started,
                   deadline=started + timeout, healthy=healthy, unhealthy_since=since,
                   posted_at=started, replaces=replaces)


def kinds(actions: tuple[object, ...]) -> list[str]:
    return [type(a).__name__ for a in actions]


# ------------------------------------------------------------------------------- cron


def test_cron_times() -> None:
    assert cron_next("*/5 * * * *", T0) == T0 + 300
    assert cron_next("0 * * * *", T0) == T0 + 3600
    assert cron_next("30 9 * * *", T0) == calendar.timegm((2026, 12, 4, 9, 30, 0))
    assert cron_next("0 0 1 1 *", T0) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert cron_next("0 12 * * 0", T0) == calendar.timegm((2026, 12, 6, 12, 0, 0))  # Sunday
    assert cron_next("0 12 * * 7", T0) == calendar.timegm((2026, 12, 6, 12, 0, 0))


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "*/0 * * * *", "a b c d e",
                                 "5-1 * * * *", "* * 32 * *"])
def test_bad_cron_strings_are_clear_errors(bad: str) -> None:
    with pytest.raises(InvalidInput, match="schedule"):
        cron_next(bad, T0)


@given(st.integers(0, 4 * 10**9), st.sampled_from(["*/7 * * * *", "15 3 * * *",
                                                     "0 */6 * * 1-5", "0 0 29 2 *"]))
def test_the_next_cron_time_is_later_on_a_minute_and_matches(after: int, expr: str) -> None:
    t = cron_next(expr, after)
    assert t > after and t % 60 == 0
    assert cron_next(expr, t - 1) == t  # nothing in between


# ------------------------------------------------------------------------------ config


def test_config_errors() -> None:
    with pytest.raises(InvalidInput, match="unknown strategy"):
        check_config(DeploymentConfig(strategy="forever"), max_timeout=600,  # type: ignore[arg-type]
                     has_health_check=True)
    with pytest.raises(InvalidInput, match="exposed port"):
        check_config(DeploymentConfig(strategy="infinite"), max_timeout=600,
                     has_health_check=False)
    with pytest.raises(InvalidInput, match="replicas"):
        check_config(DeploymentConfig(strategy="simple", replicas=0), max_timeout=600,
                     has_health_check=True)
    with pytest.raises(InvalidInput, match="market's range"):
        check_config(DeploymentConfig(strategy="simple", timeout=601), max_timeout=600,
                     has_health_check=True)
    with pytest.raises(InvalidInput, match="needs --schedule"):
        check_config(DeploymentConfig(strategy="scheduled"), max_timeout=600,
                     has_health_check=True)


# ---------------------------------------------------------------------------- strategies


def test_simple_posts_once_and_stops_an_unhealthy_replica_without_replacing_it() -> None:
    d = dep("simple", replicas=2)
    first = decide(d, [], T0, balance=10**9, price_per_second=PRICE)
    assert kinds(first.actions) == ["Post", "Post"]
    again = decide(first.deployment, [], T0 + 5, balance=10**9, price_per_second=PRICE)
    assert again.actions == ()
    sick = running("j1", healthy=False, since=T0 + 100)
    out = decide(first.deployment, [sick], T0 + 111, balance=10**9, price_per_second=PRICE)
    assert [a for a in out.actions if isinstance(a, Stop)] == [
        Stop("j1", "unhealthy for the grace window", billed_until=T0 + 100)]
    assert not [a for a in out.actions if isinstance(a, Post)]


def test_grace_window_before_an_unhealthy_replica_is_replaced() -> None:
    d = dep("infinite", replicas=1, grace_s=10)
    sick = running("j1", healthy=False, since=T0 + 100)
    early = decide(d, [sick], T0 + 109, balance=10**9, price_per_second=PRICE)
    assert early.actions == ()
    late = decide(d, [sick], T0 + 110, balance=10**9, price_per_second=PRICE)
    stop = next(a for a in late.actions if isinstance(a, Stop))
    assert stop.billed_until == T0 + 100  # billing ends at the first failed check
    assert any(isinstance(a, Post) for a in late.actions)
    assert any(isinstance(a, Note) and a.kind == "replica_unhealthy" for a in late.actions)


def test_infinite_replaces_before_the_deadline_and_stops_the_old_one_when_the_new_is_up(
) -> None:
    d = dep("infinite", replicas=1, timeout=600, lead_s=30)
    old = running("old", timeout=600)
    calm = decide(d, [old], T0 + 500, balance=10**9, price_per_second=PRICE)
    assert calm.actions == ()
    due = decide(d, [old], T0 + 571, balance=10**9, price_per_second=PRICE)
    assert [a for a in due.actions if isinstance(a, Post)] == [
        Post(1, "before its deadline", replaces="old")]
    starting = Replica("new", 1, "assigned", healthy=None, posted_at=T0 + 571, replaces="old")
    waiting = decide(d, [old, starting], T0 + 580, balance=10**9, price_per_second=PRICE)
    assert waiting.actions == ()  # no gap: the old one runs until the new one is healthy
    up = replace(starting, state="running", healthy=True, started_at=T0 + 585,
                 deadline=T0 + 1185)
    handover = decide(d, [old, up], T0 + 586, balance=10**9, price_per_second=PRICE)
    assert handover.actions == (Stop("old", "its successor is healthy"),)


def test_infinite_keeps_k_replicas() -> None:
    d = dep("infinite", replicas=3)
    out = decide(d, [running("a")], T0 + 1, balance=10**9, price_per_second=PRICE)
    assert kinds(out.actions) == ["Post", "Post"]


def test_simple_extend_extends_until_max_spend_then_says_out_of_funds() -> None:
    d = dep("simple-extend", replicas=1, timeout=100, lead_s=20, max_spend=2_500)
    r = running("j", timeout=100)
    out = decide(replace(d, spent=1_000), [r], T0 + 85, balance=10**9, price_per_second=PRICE)
    assert [a for a in out.actions if isinstance(a, Extend)] == [Extend("j", 100)]
    assert out.deployment.spent == 2_000
    broke = decide(out.deployment, [replace(r, deadline=T0 + 200)], T0 + 185,
                   balance=10**9, price_per_second=PRICE)
    assert not [a for a in broke.actions if isinstance(a, Extend)]
    assert [a.kind for a in broke.actions if isinstance(a, Note)] == ["out_of_funds"]
    assert broke.deployment.out_of_funds
    quiet = decide(broke.deployment, [replace(r, deadline=T0 + 200)], T0 + 190,
                   balance=10**9, price_per_second=PRICE)
    assert quiet.actions == ()  # said once


def test_simple_extend_stops_when_the_balance_is_short() -> None:
    d = dep("simple-extend", timeout=100, lead_s=20)
    out = decide(d, [running("j", timeout=100)], T0 + 90, balance=999,
                 price_per_second=PRICE)
    assert [a.kind for a in out.actions if isinstance(a, Note)] == ["out_of_funds"]


def test_scheduled_posts_at_cron_times_and_skips_an_overlap() -> None:
    d = dep("scheduled", replicas=2, schedule="*/5 * * * *")
    before = decide(d, [], T0 + 299, balance=10**9, price_per_second=PRICE)
    assert before.actions == ()
    on_time = decide(d, [], T0 + 300, balance=10**9, price_per_second=PRICE)
    assert kinds(on_time.actions) == ["Post", "Post"]
    assert on_time.deployment.last_run_at == T0 + 300
    still = decide(on_time.deployment, [running("a", started=T0 + 300)], T0 + 600,
                   balance=10**9, price_per_second=PRICE)
    assert [a.kind for a in still.actions if isinstance(a, Note)] == ["run_skipped"]
    allowed = replace(on_time.deployment,
                      config=replace(on_time.deployment.config, overlap="allow"))
    both = decide(allowed, [running("a", started=T0 + 300)], T0 + 600,
                  balance=10**9, price_per_second=PRICE)
    assert kinds(both.actions) == ["Post", "Post"]


def test_a_stopped_deployment_stops_its_replicas() -> None:
    d = replace(dep("infinite", replicas=2), status="stopped")
    out = decide(d, [running("a"), running("b")], T0, balance=10**9, price_per_second=PRICE)
    assert kinds(out.actions) == ["Stop", "Stop"]


# ---------------------------------------------------------------------------- revisions


def test_a_revision_rolls_out_one_replica_at_a_time() -> None:
    d = start_rollout(dep("infinite", replicas=2), 2)
    olds = [running("a"), running("b")]
    step1 = decide(d, olds, T0 + 10, balance=10**9, price_per_second=PRICE)
    assert [a for a in step1.actions if isinstance(a, Post)] == [Post(2, "roll out revision 2")]
    new = Replica("n1", 2, "assigned", healthy=None, posted_at=T0 + 10)
    wait = decide(step1.deployment, [*olds, new], T0 + 20, balance=10**9,
                  price_per_second=PRICE)
    assert not [a for a in wait.actions if isinstance(a, (Post, Stop))]
    up = replace(new, state="running", healthy=True)
    swap = decide(step1.deployment, [*olds, up], T0 + 30, balance=10**9,
                  price_per_second=PRICE)
    assert [a for a in swap.actions if isinstance(a, Stop)] == [
        Stop("a", "replaced by a healthy replica of revision 2")]
    done = decide(step1.deployment, [up, replace(up, job_id="n2")], T0 + 60,
                  balance=10**9, price_per_second=PRICE)
    assert done.deployment.revision == 2 and done.deployment.rolling_to is None
    assert any(isinstance(a, Note) and a.kind == "revision_rolled_out" for a in done.actions)


def test_a_revision_that_never_becomes_healthy_is_rolled_back() -> None:
    d = start_rollout(dep("infinite", replicas=1, rollout_timeout_s=60), 2)
    old = running("a")
    new = Replica("n1", 2, "running", healthy=False, posted_at=T0, started_at=T0)
    out = decide(d, [old, new], T0 + 61, balance=10**9, price_per_second=PRICE)
    assert out.deployment.revision == 1 and out.deployment.rolling_to is None
    assert Stop("n1", "its revision was rolled back") in out.actions
    assert any(isinstance(a, Note) and a.kind == "revision_rolled_back" for a in out.actions)
    assert not any(isinstance(a, Stop) and a.job_id == "a" for a in out.actions)


def test_a_rollout_makes_room_when_no_node_is_free_but_only_while_another_serves() -> None:
    d = start_rollout(dep("infinite", replicas=2, surge_wait_s=15), 2)
    olds = [running("a"), running("b")]
    queued = Replica("n1", 2, "queued", posted_at=T0)
    early = decide(d, [*olds, queued], T0 + 14, balance=10**9, price_per_second=PRICE)
    assert not [a for a in early.actions if isinstance(a, Stop)]
    room = decide(d, [*olds, queued], T0 + 15, balance=10**9, price_per_second=PRICE)
    assert [a.job_id for a in room.actions if isinstance(a, Stop)] == ["a"]
    lonely = decide(d, [replace(olds[0], healthy=None), queued], T0 + 30, balance=10**9,
                    price_per_second=PRICE)
    assert not [a for a in lonely.actions if isinstance(a, Stop)]  # nobody else serves
