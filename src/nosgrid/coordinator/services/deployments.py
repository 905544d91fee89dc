"""Deployment use cases: create, update, stop/start/archive, and the reconciler's pass.

The rules (what to post, extend or stop, and when) are ``core.deployments.decide``; this
module loads a deployment's replicas (jobs, and their health as the nodes last reported
it), calls the rule and carries out its actions in the caller's unit of work.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import replace
from typing import Any

from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services.lifecycle import record
from nosgrid.core import deployments as rules
from nosgrid.core.deployments import Deployment, DeploymentConfig, Replica
from nosgrid.core.errors import Conflict, Forbidden, InvalidInput, NosgridError
from nosgrid.core.jobs import state as job_rules
from nosgrid.core.jobs.load import canonical_json, parse_job_definition, spec_hash
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.jobs.state import OPEN, JobState
from nosgrid.core.ledger import wallet
from nosgrid.core.markets import Matcher
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork
from nosgrid.store.deployments import DeploymentRepo, with_config

log = logging.getLogger(__name__)
_STATE = {JobState.QUEUED: "queued", JobState.ASSIGNED: "assigned",
          JobState.RUNNING: "running"}


def exposes_ports(defn: JobDefinition) -> bool:
    """Whether some op of ``defn`` exposes a port (so its health can be checked)."""
    return any(getattr(getattr(op, "args", None), "expose", None) is not None
               for op in defn.ops)


def create(uow: UnitOfWork, owner: str, definition: JobDefinition, config: DeploymentConfig,
           now: int, *, name: str | None = None, matcher: Matcher | None = None
           ) -> tuple[Deployment, str]:
    """Validate and record a deployment (revision 1), then run its first pass."""
    market = uow.markets.find(config.market)
    if market is None:
        raise InvalidInput(f"no market {config.market!r}; `nosgrid market list` shows them",
                           field="market")
    rules.check_config(config, max_timeout=market.max_timeout,
                       has_health_check=exposes_ports(definition))
    d = Deployment(id="dep-" + secrets.token_hex(6), owner=owner, config=config,
                   created_at=now)
    name = name or d.id
    if not 1 <= len(name) <= 128 or not name.replace("-", "").replace("_", "").replace(
            ".", "").isalnum():
        raise InvalidInput("a deployment name is 1–128 letters, digits, '-', '_' or '.'",
                           field="name")
    repo = DeploymentRepo(uow.conn)
    repo.add(d, name, now)
    digest = _put_spec(uow, definition)
    repo.add_revision(d.id, 1, digest, now)
    repo.add_event(d.id, "created", f"{config.strategy}, {config.replicas} replica(s), "
                   f"{config.timeout}s each, market {config.market}", None, now)
    return reconcile(uow, d, now, matcher), name


def _put_spec(uow: UnitOfWork, definition: JobDefinition) -> str:
    digest = spec_hash(definition)
    uow.jobs.put_spec(digest, canonical_json(definition).decode())
    return digest


def owned(uow: UnitOfWork, ref: str, owner: str) -> tuple[Deployment, str]:
    d, name = DeploymentRepo(uow.conn).get(ref, owner)
    if d.owner != owner:
        raise Forbidden(f"deployment {ref} belongs to another key")
    return d, name


def update(uow: UnitOfWork, ref: str, owner: str, now: int, *,
           definition: JobDefinition | None = None, **changes: Any) -> Deployment:
    """A new definition is a new revision (rolled out replica by replica); ``changes``:
    replicas, timeout, schedule, market, max_spend."""
    d, _ = owned(uow, ref, owner)
    if d.status == "archived":
        raise Conflict(f"deployment {ref} is archived; create a new one")
    repo = DeploymentRepo(uow.conn)
    changes = {k: v for k, v in changes.items() if v is not None}
    d = with_config(d, **changes)
    revision = None
    if definition is not None:
        revision = repo.last_revision(d.id) + 1
        repo.add_revision(d.id, revision, _put_spec(uow, definition), now)
    spec = json.loads(uow.jobs.spec(repo.spec_hash(d.id, revision or d.revision)) or "{}")
    market = uow.markets.find(d.config.market)
    if market is None:
        raise InvalidInput(f"no market {d.config.market!r}", field="market")
    rules.check_config(d.config, max_timeout=market.max_timeout,
                       has_health_check=exposes_ports(parse_job_definition(spec)))
    if revision is not None:
        d = rules.start_rollout(d, revision)
        repo.add_event(d.id, "revision_created", f"revision {revision}", None, now)
    if changes:
        repo.add_event(d.id, "updated", ", ".join(f"{k}={v}" for k, v in changes.items()),
                       None, now)
    repo.save(d, now)
    return d


def set_status(uow: UnitOfWork, ref: str, owner: str, status: rules.Status,
               now: int) -> Deployment:
    """Stop (its replicas end), start again, or archive (stopped for good)."""
    d, _ = owned(uow, ref, owner)
    if d.status == "archived":
        raise Conflict(f"deployment {ref} is archived")
    d = replace(d, status=status, out_of_funds=False,
                launched=False if status == "active" else d.launched)
    repo = DeploymentRepo(uow.conn)
    repo.add_event(d.id, status if status != "active" else "started", "", None, now)
    repo.save(d, now)
    return reconcile(uow, d, now, None)


# ----------------------------------------------------------------------------- the pass


def replicas_of(uow: UnitOfWork, d: Deployment) -> list[Replica]:
    """The deployment's open jobs with their state and health (the nodes' latest reports);
    ended replicas need no decision, so a long-lived deployment's history is not reread."""
    repo = DeploymentRepo(uow.conn)
    live = set(repo.live_replicas(d.id))
    rows = [r for r in repo.replicas(d.id) if r["job_id"] in live]
    health = _health([str(r["job_id"]) for r in rows], uow)
    out = []
    for row in rows:
        job = uow.jobs.get(str(row["job_id"]))
        healthy, since = health.get(job.id, (None, None))
        out.append(Replica(job_id=job.id, revision=int(row["revision"]),
                           state=_STATE.get(job.state, "ended"), started_at=job.started_at,
                           deadline=job.deadline, healthy=healthy, unhealthy_since=since,
                           posted_at=int(row["posted_at"]), replaces=row["replaces"],
                           stopping=bool(row["stopping"])))
    return out


def _health(job_ids: list[str], uow: UnitOfWork) -> dict[str, tuple[bool, int | None]]:
    """Per job: healthy (every reported port is), and when its first failing port flipped."""
    if not job_ids:
        return {}
    s = t.gateway_services.c
    from sqlalchemy import select

    out: dict[str, tuple[bool, int | None]] = {}
    for row in uow.conn.execute(select(s.job_id, s.healthy, s.updated_at)
                                .where(s.job_id.in_(job_ids))):
        ok, since = out.get(str(row.job_id), (True, None))
        if not row.healthy:
            at = int(row.updated_at)
            ok, since = False, at if since is None else min(since, at)
        out[str(row.job_id)] = (ok, since)
    return out


def reconcile(uow: UnitOfWork, d: Deployment, now: int, matcher: Matcher | None) -> Deployment:
    """One pass of the rule for ``d``: carry out its posts, extensions and stops."""
    repo = DeploymentRepo(uow.conn)
    market = uow.markets.find(d.config.market)
    if market is None:
        return d
    d = replace(d, spent=spent(uow, d))
    decision = rules.decide(d, replicas_of(uow, d), now,
                            balance=uow.ledger.balance(wallet(d.owner)),
                            price_per_second=market.price_per_second)
    d = decision.deployment
    for action in decision.actions:
        try:
            _carry_out(uow, d, action, now, matcher)
        except NosgridError as exc:  # a post the owner cannot pay: said, not raised
            log.info("deployment action failed", extra={"deployment": d.id, "err": str(exc)})
            repo.add_event(d.id, "action_failed", f"{type(action).__name__}: {exc.message}",
                           getattr(action, "job_id", None), now)
            if isinstance(action, rules.Post):
                d = replace(d, out_of_funds=True)
                repo.add_event(d.id, "out_of_funds", exc.message, None, now)
                break
    repo.save(d, now)
    return d


def _carry_out(uow: UnitOfWork, d: Deployment, action: rules.Action, now: int,
               matcher: Matcher | None) -> None:
    repo = DeploymentRepo(uow.conn)
    if isinstance(action, rules.Note):
        repo.add_event(d.id, action.kind, action.detail, action.job_id, now)
    elif isinstance(action, rules.Post):
        spec = json.loads(uow.jobs.spec(repo.spec_hash(d.id, action.revision)) or "{}")
        job = job_services.post_job(uow, client=d.owner, definition=parse_job_definition(spec),
                                    market=d.config.market, timeout=d.config.timeout, now=now,
                                    max_queued=10**9)
        repo.add_replica(d.id, job.id, action.revision, action.replaces, now)
        if matcher is not None:
            job_services.dispatch(uow, job, now, matcher)
        repo.add_event(d.id, "replica_posted", f"revision {action.revision}: {action.reason}",
                       job.id, now)
    elif isinstance(action, rules.Extend):
        job_services.extend_job(uow, action.job_id, d.owner, action.seconds, now)
    elif isinstance(action, rules.Stop):
        stop_replica(uow, action.job_id, now, action.reason, action.billed_until)
        repo.mark_stopping(action.job_id)
        repo.add_event(d.id, "replica_stopped", action.reason, action.job_id, now)


def stop_replica(uow: UnitOfWork, job_id: str, now: int, reason: str,
                 billed_until: int | None) -> None:
    """End a replica's job (its node stops the container when it sees it), billing it up
    to ``billed_until`` at most; the rest of its escrow goes back to the owner."""
    job = uow.jobs.get(job_id)
    if job.state not in OPEN:
        return
    tr = job_rules.cancel(job, now, f"deployment: {reason}", billed_until=billed_until)
    job_services.settle_job(uow, record(uow, tr, kind="job.cancelled"), now)


def reconcile_all(uow: UnitOfWork, now: int, matcher: Matcher | None) -> int:
    """The maintenance loop's pass over every deployment that may need something."""
    repo = DeploymentRepo(uow.conn)
    n = 0
    for d in repo.active():
        reconcile(uow, d, now, matcher)
        n += 1
    return n


def spent(uow: UnitOfWork, d: Deployment) -> int:
    """What the deployment's replicas have been charged so far (settled) or hold (open)."""
    total = 0
    for row in DeploymentRepo(uow.conn).replicas(d.id):
        job = uow.jobs.get(str(row["job_id"]))
        pay = job_rules.payout(job)
        total += job.deposit - pay.refund if job.state is JobState.SETTLED else job.deposit
    return total
