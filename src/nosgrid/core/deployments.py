"""Deployments: long-running services the market keeps alive, and what to do next.

A deployment is a job definition (its current **revision**), a **strategy** and a replica
count K. The coordinator's reconciler calls :func:`decide` on every maintenance pass with
the deployment and the replicas (jobs) it has; :func:`decide` is pure and returns the
actions to take (post, extend, stop) and the events to record. The clock is an argument.

Strategies:

``simple``
    Post K replicas once; each runs until its timeout. A replica that fails its health
    checks for the grace window is stopped (billing ends at its first failed check) and
    reported, not replaced.
``simple-extend``
    As ``simple``, but each replica's job is extended before it times out while the
    owner's balance and ``max_spend`` allow (``out_of_funds`` once they do not: the
    replicas then run out their time). Unhealthy replicas are replaced.
``scheduled``
    Post K replicas at each time of a 5-field cron (UTC). Overlap policy ``forbid`` (the
    default) skips a run while the previous one still has live replicas; ``allow`` posts
    anyway.
``infinite``
    Keep K healthy replicas at all times: a replacement is posted ``lead_s`` before a
    replica's deadline and the old one is stopped only once the new one is healthy;
    unhealthy replicas are replaced. Needs an exposed port with a health check.

**Billing stops at the first failed check.** A replica whose checks fail for
``grace_s`` is stopped with ``billed_until`` = the time of the first failed check: the
node is paid for healthy time only and the client gets the rest back.

**Revisions** roll out one replica at a time: a replica of the new revision is posted;
once it is healthy one old replica stops, and so on. When no node is free for the extra
replica within ``surge_wait_s``, an old replica stops first to make room, but only while
another replica is healthy, so the service keeps answering. A new replica that does not become
healthy within ``rollout_timeout_s`` (or fails) rolls the deployment back to the previous
revision, and the events say why.

>>> cron_next("*/5 * * * *", 0)
300
>>> cron_next("0 12 * * 1", 0)  # 1970-01-01 was a Thursday; the next Monday, noon UTC
388800
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from nosgrid.core.errors import InvalidInput

Strategy = Literal["simple", "simple-extend", "scheduled", "infinite"]
STRATEGIES: Final[tuple[Strategy, ...]] = ("simple", "simple-extend", "scheduled", "infinite")
Status = Literal["active", "stopped", "archived"]
Overlap = Literal["forbid", "allow"]
MAX_REPLICAS: Final = 64


# ----------------------------------------------------------------------------- cron


_FIELDS: Final = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
                  ("month", 1, 12), ("day of week", 0, 6))


def parse_cron(expr: str) -> tuple[frozenset[int], ...]:
    """The five sets of a standard cron expression (``*``, ``a-b``, ``a,b``, ``*/n``,
    ``a-b/n``; day of week 0–6 from Sunday, 7 also Sunday). Raises InvalidInput."""
    parts = expr.split()
    if len(parts) != 5:
        raise InvalidInput(f"a schedule is 5 fields (minute hour day month weekday, UTC); "
                           f"{expr!r} has {len(parts)}", field="schedule")
    out = []
    for text, (name, lo, hi) in zip(parts, _FIELDS, strict=True):
        values: set[int] = set()
        for piece in text.split(","):
            base, _, step_s = piece.partition("/")
            try:
                step = int(step_s) if step_s else 1
                if base == "*":
                    a, b = lo, hi
                elif "-" in base:
                    a_s, b_s = base.split("-", 1)
                    a, b = int(a_s), int(b_s)
                else:
                    a = b = int(base)
            except ValueError:
                raise InvalidInput(f"schedule {expr!r}: {name} {piece!r} is not a number, "
                                   "a range or */n", field="schedule") from None
            top = 7 if name == "day of week" else hi
            if step < 1 or not (lo <= a <= b <= top):
                raise InvalidInput(f"schedule {expr!r}: {name} {piece!r} is outside "
                                   f"{lo}-{top}", field="schedule")
            values.update(v % 7 if name == "day of week" else v for v in range(a, b + 1, step))
        out.append(frozenset(values))
    return tuple(out)


def cron_next(expr: str, after: int) -> int:
    """The first cron time strictly after ``after`` (unix seconds, UTC)."""
    minute, hour, dom, month, dow = parse_cron(expr)
    t = (after // 60 + 1) * 60
    for _ in range(366 * 24 * 60 * 5):  # at most five years of minutes
        tm = time.gmtime(t)
        if tm.tm_mon not in month:
            t = _start_of_next_month(tm)
            continue
        cron_dow = (tm.tm_wday + 1) % 7  # Python: Monday 0; cron: Sunday 0
        # cron's rule: with both day fields restricted, either may match
        dom_any, dow_any = len(dom) == 31, len(dow) == 7
        day_ok = ((tm.tm_mday in dom) or (cron_dow in dow)) if not (dom_any or dow_any) \
            else (tm.tm_mday in dom and cron_dow in dow)
        if not day_ok:
            t = calendar.timegm((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0)) + 86_400
            continue
        if tm.tm_hour not in hour:
            t = calendar.timegm((tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, 0, 0)) + 3600
            continue
        if tm.tm_min in minute:
            return t
        t += 60
    raise InvalidInput(f"schedule {expr!r} never fires", field="schedule")


def _start_of_next_month(tm: time.struct_time) -> int:
    year, mon = (tm.tm_year + 1, 1) if tm.tm_mon == 12 else (tm.tm_year, tm.tm_mon + 1)
    return calendar.timegm((year, mon, 1, 0, 0, 0))


# ------------------------------------------------------------------------- the values


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """What the owner asked for (changed by ``update``)."""

    strategy: Strategy
    replicas: int = 1
    #: each replica job's timeout (s)
    timeout: int = 600
    market: str = ""
    schedule: str | None = None
    #: the most the deployment may spend in base units, over its life (None: no cap)
    max_spend: int | None = None
    overlap: Overlap = "forbid"
    #: how long a replica may fail its checks before it is stopped (and replaced)
    grace_s: int = 10
    #: how long before a replica's deadline it is extended, or replaced
    lead_s: int = 30
    #: how long a new revision's replica has to become healthy
    rollout_timeout_s: int = 300
    #: how long a rollout waits for a node to run an extra replica before it stops an old
    #: one to make room (only while another replica serves)
    surge_wait_s: int = 15


def check_config(config: DeploymentConfig, *, max_timeout: int, has_health_check: bool) -> None:
    """Raise InvalidInput for a config the market or the definition cannot honour."""
    if config.strategy not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {config.strategy!r}; one of "
                           f"{', '.join(STRATEGIES)}", field="strategy")
    if not 1 <= config.replicas <= MAX_REPLICAS:
        raise InvalidInput(f"replicas must be 1..{MAX_REPLICAS}", field="replicas")
    if not 1 <= config.timeout <= max_timeout:
        raise InvalidInput(f"timeout {config.timeout}s is outside the market's range "
                           f"1..{max_timeout}s", field="timeout")
    if config.strategy == "scheduled":
        if not config.schedule:
            raise InvalidInput("a scheduled deployment needs --schedule (5-field cron, UTC)",
                               field="schedule")
        parse_cron(config.schedule)
    elif config.schedule:
        raise InvalidInput("--schedule is for the scheduled strategy", field="schedule")
    if config.strategy == "infinite" and not has_health_check:
        raise InvalidInput("an infinite deployment needs an exposed port (args.expose) so "
                           "its replicas' health can be checked", field="definition")
    if config.max_spend is not None and config.max_spend < 0:
        raise InvalidInput("max_spend must not be negative", field="max_spend")
    if config.lead_s >= config.timeout and config.strategy in ("infinite", "simple-extend"):
        raise InvalidInput(f"the timeout ({config.timeout}s) must be longer than the "
                           f"lead time ({config.lead_s}s) to extend or replace in",
                           field="timeout")


@dataclass(frozen=True, slots=True)
class Replica:
    """One job of a deployment, as the reconciler sees it."""

    job_id: str
    revision: int
    #: ``queued``, ``assigned``, ``running`` or ``ended``
    state: str
    started_at: int | None = None
    deadline: int | None = None
    #: None: no health report yet; True/False: the latest report
    healthy: bool | None = None
    #: when the latest report said unhealthy (the first failed check of this window)
    unhealthy_since: int | None = None
    #: when it was posted
    posted_at: int = 0
    #: the job of the replica this one replaces (infinite: posted before a deadline)
    replaces: str | None = None
    #: being stopped already (asked this pass or before)
    stopping: bool = False

    @property
    def live(self) -> bool:
        return self.state != "ended" and not self.stopping


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    owner: str
    config: DeploymentConfig
    status: Status = "active"
    revision: int = 1
    #: the revision before the last update (rolled back to if the new one fails)
    previous_revision: int | None = None
    #: a rollout in progress: the revision the replicas move to
    rolling_to: int | None = None
    spent: int = 0
    #: the last cron time it posted for (scheduled)
    last_run_at: int | None = None
    #: ``out_of_funds`` was said (once)
    out_of_funds: bool = False
    #: simple: the replicas were posted (never again)
    launched: bool = False
    created_at: int = 0


# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Post:
    revision: int
    reason: str
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class Extend:
    job_id: str
    seconds: int


@dataclass(frozen=True, slots=True)
class Stop:
    job_id: str
    reason: str
    #: bill the replica only up to here (its first failed check); None: until now
    billed_until: int | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """An event for the deployment's log (``replica_unhealthy``, ``out_of_funds``…)."""

    kind: str
    detail: str
    job_id: str | None = None


Action = Post | Extend | Stop | Note


@dataclass(frozen=True, slots=True)
class Decision:
    actions: tuple[Action, ...]
    #: the deployment after the pass (rollout moved, flags set)
    deployment: Deployment


@dataclass
class _Plan:
    d: Deployment
    actions: list[Action] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)

    def stop(self, r: Replica, reason: str, billed_until: int | None = None) -> None:
        if r.job_id not in self.stopped:
            self.stopped.add(r.job_id)
            self.actions.append(Stop(r.job_id, reason, billed_until))

    def note(self, kind: str, detail: str, job_id: str | None = None) -> None:
        self.actions.append(Note(kind, detail, job_id))


def decide(d: Deployment, replicas: Sequence[Replica], now: int, *,
           balance: int, price_per_second: int) -> Decision:
    """What the reconciler does for ``d`` at ``now``: posts, extensions, stops, events.

    ``balance``: what the owner's wallet holds; ``price_per_second``: the market's price
    (what one more second of one replica escrows).
    """
    plan = _Plan(d)
    live = [r for r in replicas if r.live]
    if d.status != "active":
        for r in live:
            plan.stop(r, f"the deployment is {d.status}")
        return Decision(tuple(plan.actions), d)
    cfg = d.config
    replaces = cfg.strategy in ("infinite", "simple-extend")

    # liveness: a replica failing its checks for the grace window stops (billed to the
    # first failed check) and, for the self-healing strategies, is replaced
    for r in live:
        if r.healthy is False and r.unhealthy_since is not None \
                and now - r.unhealthy_since >= cfg.grace_s:
            plan.note("replica_unhealthy", f"failed its health checks since "
                      f"{r.unhealthy_since} ({now - r.unhealthy_since}s ≥ grace "
                      f"{cfg.grace_s}s); billed until its first failed check", r.job_id)
            plan.stop(r, "unhealthy for the grace window", billed_until=r.unhealthy_since)
    live = [r for r in live if r.job_id not in plan.stopped]

    _rollout(plan, live, now)
    live = [r for r in live if r.job_id not in plan.stopped]
    target = plan.d.rolling_to or plan.d.revision

    if cfg.strategy == "simple":
        if not plan.d.launched:
            plan.actions += [Post(plan.d.revision, "launch") for _ in range(cfg.replicas)]
            plan.d = replace(plan.d, launched=True)
        return Decision(tuple(plan.actions), plan.d)

    if cfg.strategy == "scheduled":
        due = cron_next(cfg.schedule or "* * * * *", plan.d.last_run_at
                        if plan.d.last_run_at is not None else plan.d.created_at)
        if due <= now:
            if live and cfg.overlap == "forbid":
                plan.note("run_skipped", f"the run due at {due} was skipped: the previous "
                          "run still has live replicas (overlap policy forbid)")
            else:
                plan.actions += [Post(plan.d.revision, f"scheduled run {due}")
                                 for _ in range(cfg.replicas)]
            plan.d = replace(plan.d, last_run_at=due)
        return Decision(tuple(plan.actions), plan.d)

    if cfg.strategy == "simple-extend":
        cost = price_per_second * cfg.timeout
        for r in live:
            if r.state != "running" or r.deadline is None or r.deadline - now > cfg.lead_s:
                continue
            budget_ok = cfg.max_spend is None or plan.d.spent + cost <= cfg.max_spend
            if budget_ok and balance >= cost:
                plan.actions.append(Extend(r.job_id, cfg.timeout))
                balance -= cost
                plan.d = replace(plan.d, spent=plan.d.spent + cost)
                plan.note("extended", f"by {cfg.timeout}s", r.job_id)
            elif not plan.d.out_of_funds:
                why = "max_spend reached" if not budget_ok else "the owner's balance is short"
                plan.note("out_of_funds", f"{why}: replicas run out their time and are not "
                          "extended or replaced")
                plan.d = replace(plan.d, out_of_funds=True)

    if cfg.strategy == "infinite":
        successors = {r.replaces for r in live if r.replaces}
        for r in live:
            due = r.deadline is not None and r.deadline - now <= cfg.lead_s \
                and r.job_id not in successors and r.replaces is None
            if due and _can_pay(plan.d, cfg, balance, price_per_second):
                plan.actions.append(Post(target, "before its deadline", replaces=r.job_id))
                plan.note("replica_replaced", "a successor is posted before its "
                          "deadline; it stops once the successor is healthy", r.job_id)
            if r.replaces is not None and r.healthy:  # the successor is up: the old one goes
                old = next((o for o in live if o.job_id == r.replaces), None)
                if old is not None:
                    plan.stop(old, "its successor is healthy")
        live = [r for r in live if r.job_id not in plan.stopped]

    if replaces and not plan.d.out_of_funds:
        # count the live replicas, a successor and the one it replaces as one
        counted = [r for r in live if r.replaces is None
                   or r.replaces not in {o.job_id for o in live}]
        missing = cfg.replicas - len(counted) - sum(
            1 for a in plan.actions if isinstance(a, Post) and a.replaces is None)
        for _ in range(max(0, missing)):
            if not _can_pay(plan.d, cfg, balance, price_per_second):
                plan.note("out_of_funds", "the owner's balance or max_spend cannot pay for a "
                          "replacement replica")
                plan.d = replace(plan.d, out_of_funds=True)
                break
            plan.actions.append(Post(target, "keep the replica count"))
            balance -= price_per_second * cfg.timeout
    return Decision(tuple(plan.actions), plan.d)


def _can_pay(d: Deployment, cfg: DeploymentConfig, balance: int, price: int) -> bool:
    cost = price * cfg.timeout
    return balance >= cost and (cfg.max_spend is None or d.spent + cost <= cfg.max_spend)


def _rollout(plan: _Plan, live: list[Replica], now: int) -> None:
    """Move a rollout one step: a new replica healthy → one old one stops; a new replica
    that fails or stays unhealthy too long → roll back."""
    d = plan.d
    new_rev = d.rolling_to
    if new_rev is None:
        return
    cfg = d.config
    new = [r for r in live if r.revision == new_rev]
    old = [r for r in live if r.revision != new_rev]
    failed = [r for r in new if r.healthy is not True
              and now - r.posted_at > cfg.rollout_timeout_s]
    if failed or plan.stopped & {r.job_id for r in new}:
        back = d.previous_revision or d.revision
        plan.note("revision_rolled_back", f"revision {new_rev} did not become healthy "
                  f"within {cfg.rollout_timeout_s}s (or failed its checks); back to "
                  f"revision {back}")
        for r in new:
            plan.stop(r, "its revision was rolled back")
        plan.d = replace(d, revision=back, rolling_to=None, previous_revision=None)
        return
    healthy_new = [r for r in new if r.healthy]
    waiting = [r for r in new if r.state == "queued"
               and now - r.posted_at >= cfg.surge_wait_s]
    if waiting and old:  # no node is free for a surge replica: make room, if another serves
        victim = old[0]
        if any(r.healthy for r in live if r.job_id != victim.job_id):
            plan.stop(victim, f"making room for revision {new_rev}: no node was free for "
                      f"an extra replica within {cfg.surge_wait_s}s")
            return
    if not old:
        plan.note("revision_rolled_out", f"every replica runs revision {new_rev}")
        plan.d = replace(d, revision=new_rev, rolling_to=None)
        return
    if len(healthy_new) == len(new) and len(new) + len(old) <= cfg.replicas + 1:
        if healthy_new and len(new) + len(old) > cfg.replicas:
            plan.stop(old[0], f"replaced by a healthy replica of revision {new_rev}")
        elif not any(r.healthy is not True for r in new):
            plan.actions.append(Post(new_rev, f"roll out revision {new_rev}"))


def start_rollout(d: Deployment, new_revision: int) -> Deployment:
    """An update with a new definition: the replicas move to ``new_revision`` one by one
    (``simple`` and ``scheduled`` deployments use it for their next posts at once)."""
    if d.config.strategy in ("simple", "scheduled"):
        return replace(d, previous_revision=d.revision, revision=new_revision)
    return replace(d, previous_revision=d.revision, rolling_to=new_revision)
