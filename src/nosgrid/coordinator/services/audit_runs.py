"""Verification runs: the state rows, who may run a job again, and the run jobs themselves.

An audit, replica or tiebreak run is an ordinary job posted for the same client and spec
and assigned straight to a chosen node; only an ``audit_run/<run>`` row, which no node can
read, marks it. This module picks the runner (:func:`pick_runner`, by the journal beacon
among unrelated candidates), funds and posts the run (:func:`spawn_run`: from
``audit_pool``, or from the job's ``replicas:`` reserve when the client paid for it), and
settles it when it ends (:func:`settle_run`). :mod:`.verification` decides when runs are
needed and what their outputs mean.

State rows (``protocol_state``, JSON bodies):

* ``verification/<job>``: one per held job (mode, beacon, rate, auditor, runs, verdict);
* ``audit_run/<run job>``: marks a job as an audit, replica or tiebreak run of ``of``;
* ``audit_record/<node>``: clean jobs since the node's last fault, recent partners.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from sqlalchemy import select

from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core import audit_settlement as settle_rules
from nosgrid.core import reputation as rep_rules
from nosgrid.core import verification as rules
from nosgrid.core.errors import Forbidden
from nosgrid.core.jobs import state as job_rules
from nosgrid.core.jobs.state import Event, Job, JobState, Transition
from nosgrid.core.ledger import Posting, escrow, replica_reserve, wallet
from nosgrid.core.slashing import may_take_jobs
from nosgrid.core.verification import AUDIT_POOL, Candidate, VerificationParams
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork
from nosgrid.store.repositories import _insert

VERIFICATION: Final = "verification"
AUDIT_RUN: Final = "audit_run"
AUDIT_RECORD: Final = "audit_record"
#: journal entry kinds written here
RUN_SETTLED_ENTRY: Final = "audit.run.settled"
RESERVE_RETURNED_ENTRY: Final = "job.replicas.returned"
#: a run that ends without a result is retried on another node at most this often
MAX_RUN_RETRIES: Final = 3


@dataclass(frozen=True, slots=True)
class VerificationConfig:
    """The coordinator's verification settings (see ``CoordinatorSettings``)."""

    params: VerificationParams = field(default_factory=VerificationParams)
    #: force this audit rate (bps) for every auditable job; None → the adaptive rate
    force_rate_bps: int | None = None
    #: a shared audit/tiebreak within this many seconds makes two nodes "recent partners"
    partner_window_s: int = 7 * 24 * 3_600


def get_row(uow: UnitOfWork, kind: str, key: str) -> dict[str, Any] | None:
    value = uow.conn.execute(select(t.protocol_state.c.body).where(
        t.protocol_state.c.kind == kind, t.protocol_state.c.key == key)).scalar()
    return None if value is None else cast(dict[str, Any], json.loads(value))


def put_row(uow: UnitOfWork, kind: str, key: str, body: Mapping[str, Any]) -> None:
    text = json.dumps(dict(body), sort_keys=True, separators=(",", ":"))
    ins = _insert(uow.conn, t.protocol_state).values(kind=kind, key=key, body=text)
    uow.conn.execute(ins.on_conflict_do_update(index_elements=["kind", "key"],
                                               set_={"body": text}))


def all_rows(uow: UnitOfWork, kind: str) -> dict[str, dict[str, Any]]:
    rows = uow.conn.execute(select(t.protocol_state.c.key, t.protocol_state.c.body).where(
        t.protocol_state.c.kind == kind))
    return {str(r.key): json.loads(r.body) for r in rows}


def run_of(uow: UnitOfWork, job_id: str) -> dict[str, Any] | None:
    """The audit-run row of ``job_id`` (None for an ordinary job)."""
    return get_row(uow, AUDIT_RUN, job_id)


def verification_of(uow: UnitOfWork, job_id: str) -> dict[str, Any] | None:
    return get_row(uow, VERIFICATION, job_id)


def settle_run(uow: UnitOfWork, job: Job, now: int) -> Job | None:
    """Settle an audit or tiebreak run whatever way it ended (None: not a run).

    A pool-funded run's escrow goes back to ``audit_pool``; its runner is paid from the
    pool when the verdict is in. A client-paid replica that succeeded is held (its escrow
    stays) until the verdict says whether its runner is paid; one without a result returns
    its escrow to the job's ``replicas:`` reserve for the next try. A client may not cancel
    a run of its own job (only the verification service retires a run, e.g. one that went
    back to the queue).
    """
    run = run_of(uow, job.id)
    if run is None:
        return None
    if job.state is JobState.CANCELLED and not run.get("retired"):
        raise Forbidden(f"job {job.id} is a verification run of one of your jobs; it cannot "
                        "be cancelled")
    client_paid = run.get("paid_by") == "client"
    if client_paid and succeeded(job) and job.state is JobState.COMPLETED:
        return job_services.record(uow, settle_rules.hold_for_audit(job, now), kind="job.held")
    held = uow.ledger.balance(escrow(job.id))
    back = replica_reserve(str(run["of"])) if client_paid else AUDIT_POOL
    postings = (Posting(escrow(job.id), back, held),) if held else ()
    new = replace(job, state=JobState.SETTLED)
    tr = Transition(new, (Event("JobSettled", job.id, now, {"run": True}),), postings)
    return job_services.record(uow, tr, kind=RUN_SETTLED_ENTRY)


def retire(uow: UnitOfWork, run: Job, now: int) -> Job:
    """End a run that left its chosen node (requeued, or taken by another node)."""
    row = run_of(uow, run.id) or {}
    put_row(uow, AUDIT_RUN, run.id, {**row, "retired": True})
    ended = job_services.record(uow, job_rules.cancel(run, now, "reassigned"),
                                kind="job.cancelled")
    return settle_run(uow, ended, now) or ended


def candidates(uow: UnitOfWork, market: str, now: int) -> list[Candidate]:
    """Online, unjailed nodes in ``market`` as the auditor choice sees them.

    The registry has no operator keys or delegations yet: a node's operator is its own
    key (the stake owner) and ``recent_partners`` are the nodes it shared a verification
    with recently.
    """
    params = uow.markets.get(market)
    records = all_rows(uow, AUDIT_RECORD)
    out = []
    for n in uow.nodes.all():
        if market not in n["markets"]:
            continue
        acct = uow.economics.stake(n["id"])
        available = (n.get("status") == "online"
                     and may_take_jobs(acct, uow.economics.offences(n["id"]), params, now))
        row = records.get(n["id"], {})
        out.append(Candidate(
            node_id=n["id"], operator=acct.owner if acct else "",
            recent_partners=frozenset(str(p) for p, _at in row.get("partners", [])),
            clean_jobs=int(row.get("clean_jobs", 0)),
            reputation=rep_rules.score(uow.economics.reputation(n["id"]), now),
            stake=acct.market_stake if acct else 0, available=available))
    return out


def _recent(c: Candidate, row: Mapping[str, Any] | None, now: int, window: int) -> Candidate:
    partners = frozenset(str(p) for p, at in (row or {}).get("partners", [])
                         if now - int(at) <= window)
    return replace(c, recent_partners=partners)


def pick_runner(uow: UnitOfWork, v: Mapping[str, Any], job: Job, now: int,
                cfg: VerificationConfig, *, exclude: Sequence[str], purpose: str,
                ) -> Candidate | None:
    """The node that runs ``job`` again, drawn from the beacon among unrelated candidates.

    A sampled audit needs an established auditor (``auditor_min_clean_jobs``, reputation).
    The runs of a job whose client asked for ``replicas`` only need to be online, staked as
    the market asks and unrelated: the client chose to pay for redundancy, which must work
    in a young market too (as BOINC replicates on any host); k agreeing runs on unrelated
    nodes and the dispute panel are its protection.
    """
    params = cfg.params
    if paid_by_client(v):
        params = replace(params, auditor_min_clean_jobs=0, auditor_min_reputation=0.0)
    records = all_rows(uow, AUDIT_RECORD)
    pool = [_recent(c, records.get(c.node_id), now, cfg.partner_window_s)
            for c in candidates(uow, job.market, now)]
    by_id = {c.node_id: c for c in pool}
    audited = by_id.get(str(v["node"]), Candidate(str(v["node"])))
    excluded = [by_id.get(n, Candidate(n)) for n in exclude]
    min_stake = uow.markets.get(job.market).min_stake
    return rules.choose_auditor(job.id, str(v["beacon"]), audited, pool, params,
                                exclude=excluded, purpose=purpose, min_stake=min_stake)


def spawn_run(uow: UnitOfWork, job: Job, node: str, role: str, now: int, *,
               client_paid: bool = False) -> Job:
    """Post a copy of ``job`` (same client, spec, timeout, deposit) assigned to ``node``.

    To the runner it is an ordinary job; its escrow comes from ``audit_pool`` as far as
    the pool goes, or, for a replica the client asked for, from the job's ``replicas:``
    reserve. The ``audit_run`` row is what marks it, and nodes never see it.
    """
    market = uow.markets.get(job.market)
    run_id = job_services.new_job_id()
    tr = job_rules.post(job_id=run_id, client=job.client, market=market,
                        spec_hash=job.spec_hash, timeout=job.timeout, max_price=job.deposit,
                        now=now)
    run = replace(tr.job, deposit=job.deposit, price_per_second=job.price_per_second,
                  fee_bps=job.fee_bps, stakers_share_bps=job.stakers_share_bps)
    funder = replica_reserve(job.id) if client_paid else AUDIT_POOL
    funded = min(run.deposit, uow.ledger.balance(funder))
    postings = (Posting(funder, escrow(run_id), funded),) if funded else ()
    put_row(uow, AUDIT_RUN, run_id, {"of": job.id, "role": role, "node": node, "at": now,
                                  "paid_by": "client" if client_paid else "pool"})
    job_services.record(uow, Transition(run, tr.events, postings), kind="job.posted", new=True)
    return job_services.assign_to(uow, run, node, now)


def runs_of(uow: UnitOfWork, v: Mapping[str, Any], role: str, now: int
          ) -> list[tuple[dict[str, Any], Job]]:
    """The rows and jobs of ``role`` runs; a run that left its node is retired first."""
    out = []
    for r in v["runs"]:
        if r["role"] != role:
            continue
        run = uow.jobs.get(r["job"])
        if run.state in job_rules.OPEN and run.node != r["node"]:
            run = retire(uow, run, now)
        out.append((r, run))
    return out


def done(run: Job) -> bool:
    return run.state not in job_rules.OPEN


def succeeded(run: Job) -> bool:
    return done(run) and run.fault is None and not run.reason and bool(run.result)


def start_run(uow: UnitOfWork, job: Job, v: dict[str, Any], role: str, now: int,
               cfg: VerificationConfig, *, exclude: Sequence[str], slot: int) -> Job | None:
    tries = sum(1 for r in v["runs"] if r["role"] == role and r.get("slot", 0) == slot)
    purpose = "audit" if role == "audit" and slot == 0 else f"{role}:{slot}"
    pick = pick_runner(uow, v, job, now, cfg, exclude=exclude,
                 purpose=purpose if tries == 0 else f"{purpose}:retry:{tries}")
    if pick is None:
        return None
    client_paid = role == "audit" and paid_by_client(v)
    run = spawn_run(uow, job, pick.node_id, role, now, client_paid=client_paid)
    v["runs"].append({"job": run.id, "role": role, "node": pick.node_id, "slot": slot})
    return run


def paid_by_client(v: Mapping[str, Any]) -> bool:
    """The client asked for redundant runs (``replicas`` > 1) and reserved their deposits."""
    return int(v.get("replicas", 1)) > 1


def audit_slots(v: Mapping[str, Any]) -> int:
    """How many audit runs the job gets: its k − 1 replicas, or one sampled audit."""
    return max(1, int(v.get("replicas", 1)) - 1)


def return_reserve(uow: UnitOfWork, job: Job, now: int) -> None:
    """Give the client back what its job's redundant runs did not use (``replicas:<job>``)."""
    left = uow.ledger.balance(replica_reserve(job.id))
    if left > 0:
        uow.ledger.append(RESERVE_RETURNED_ENTRY, job.id, now,
                          [Posting(replica_reserve(job.id), wallet(job.client), left)], {})

