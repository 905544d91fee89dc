"""Verification use cases: hold auditable jobs, sample audits from the journal, run audit
and tiebreak jobs, compare their outputs, and settle the verdict.

The rules are in :mod:`nosgrid.core.verification`; this module loads, calls them and saves.
Its state lives in ``protocol_state`` rows, never in a field a node can see:

* ``verification/<job>``: one per held job (mode, beacon, rate, auditor, runs, verdict);
* ``audit_run/<run job>``: marks a job as an audit, tiebreak run of ``of``;
* ``audit_record/<node>``: clean jobs since the node's last fault, recent partners.

Lifecycle of a held job (``tick`` runs it from the maintenance loop)::

    completed ─hold─► verifying ──(beacon entry)──► not sampled ─(window closes)─► settled
                          │ sampled: audit run on an unrelated node
                          ├── outputs match ──────────────────────────────────────► settled
                          └── outputs differ ─► disputed ─(panel runs)─► verdict ─► settled

Example (what the routes and the loop call)::

    held = verification.after_completed(uow, job, now)   # in finish_job
    verification.tick(uow, now, config, read_blob)         # in Coordinator.maintenance
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from sqlalchemy import func, select

from nosgrid.coordinator.services import economics
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core import reputation as rep_rules
from nosgrid.core import verification as rules
from nosgrid.core.errors import Forbidden
from nosgrid.core.jobs import state as job_rules
from nosgrid.core.jobs.meta import MAX_REPLICAS
from nosgrid.core.jobs.state import Event, Job, JobState, Transition
from nosgrid.core.ledger import Posting, escrow, replica_reserve, wallet
from nosgrid.core.slashing import may_take_jobs
from nosgrid.core.verification import (
    AUDIT_POOL,
    AuditRecord,
    Candidate,
    DisputeOutcome,
    Mode,
    Tolerance,
    Verdict,
    VerificationParams,
)
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork
from nosgrid.store.repositories import _insert

log = logging.getLogger(__name__)

VERIFICATION: Final = "verification"
AUDIT_RUN: Final = "audit_run"
AUDIT_RECORD: Final = "audit_record"
#: journal entry kinds written here
RESULT_ENTRY: Final = "job.result"
BEACON_ENTRY: Final = "verification.beacon"
VERDICT_ENTRY: Final = "audit.verdict"
RUN_SETTLED_ENTRY: Final = "audit.run.settled"
RESERVE_RETURNED_ENTRY: Final = "job.replicas.returned"
AUDITABLE: Final = ("deterministic", "tolerance")
#: a run that ends without a result is retried on another node at most this often
MAX_RUN_RETRIES: Final = 3
PARTNER_MEMORY: Final = 50

ReadBlob = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class VerificationConfig:
    """The coordinator's verification settings (see ``CoordinatorSettings``)."""

    params: VerificationParams = field(default_factory=VerificationParams)
    #: force this audit rate (bps) for every auditable job; None → the adaptive rate
    force_rate_bps: int | None = None
    #: a shared audit/tiebreak within this many seconds makes two nodes "recent partners"
    partner_window_s: int = 7 * 24 * 3_600


# --------------------------------------------------------------------- state rows


def _get(uow: UnitOfWork, kind: str, key: str) -> dict[str, Any] | None:
    value = uow.conn.execute(select(t.protocol_state.c.body).where(
        t.protocol_state.c.kind == kind, t.protocol_state.c.key == key)).scalar()
    return None if value is None else cast(dict[str, Any], json.loads(value))


def _put(uow: UnitOfWork, kind: str, key: str, body: Mapping[str, Any]) -> None:
    text = json.dumps(dict(body), sort_keys=True, separators=(",", ":"))
    ins = _insert(uow.conn, t.protocol_state).values(kind=kind, key=key, body=text)
    uow.conn.execute(ins.on_conflict_do_update(index_elements=["kind", "key"],
                                               set_={"body": text}))


def _all(uow: UnitOfWork, kind: str) -> dict[str, dict[str, Any]]:
    rows = uow.conn.execute(select(t.protocol_state.c.key, t.protocol_state.c.body).where(
        t.protocol_state.c.kind == kind))
    return {str(r.key): json.loads(r.body) for r in rows}


def run_of(uow: UnitOfWork, job_id: str) -> dict[str, Any] | None:
    """The audit-run row of ``job_id`` (None for an ordinary job)."""
    return _get(uow, AUDIT_RUN, job_id)


def verification_of(uow: UnitOfWork, job_id: str) -> dict[str, Any] | None:
    return _get(uow, VERIFICATION, job_id)


def audit_record(uow: UnitOfWork, node: str, now: int) -> AuditRecord:
    row = _get(uow, AUDIT_RECORD, node) or {}
    rep = rep_rules.score(uow.economics.reputation(node), now)
    return AuditRecord(int(row.get("clean_jobs", 0)), rep)


def _note_record(uow: UnitOfWork, node: str, now: int, *, faulted: bool | None,
                 partners: Sequence[str] = ()) -> None:
    """Count one verified job (``faulted`` None: only remember ``partners``)."""
    row = _get(uow, AUDIT_RECORD, node) or {"clean_jobs": 0, "partners": []}
    if faulted is not None:
        rec = rules.next_record(AuditRecord(int(row["clean_jobs"])), faulted=faulted,
                                reputation=0.5)
        row["clean_jobs"] = rec.clean_jobs
        row["faults"] = int(row.get("faults", 0)) + (1 if faulted else 0)
    known = [p for p in row.get("partners", []) if p[0] not in partners]
    row["partners"] = (known + [[p, now] for p in partners if p != node])[-PARTNER_MEMORY:]
    _put(uow, AUDIT_RECORD, node, row)


def _record_audit(uow: UnitOfWork, node: str, now: int, *, passed: bool) -> None:
    rep = rep_rules.record_audit(uow.economics.reputation(node), now, passed=passed)
    uow.economics.save_reputation(node, rep)


# --------------------------------------------------------------------- pure helpers


def spec_terms(spec_body: str | None) -> tuple[Mode, Tolerance, int]:
    """``(mode, tolerance, replicas)`` from a stored definition's ``meta.nosgrid``.

    >>> spec_terms('{"meta": {"nosgrid": {"verification": "tolerance", "rel_eps": 0.1}}}')
    ('tolerance', Tolerance(abs_eps=1e-09, rel_eps=0.1), 1)
    >>> spec_terms(None)[0]
    'none'
    """
    try:
        meta = json.loads(spec_body or "{}").get("meta") or {}
    except (ValueError, AttributeError):
        meta = {}
    extra = meta.get("nosgrid") if isinstance(meta, dict) else None
    extra = extra if isinstance(extra, dict) else {}
    mode = extra.get("verification") or "none"
    if mode not in ("deterministic", "tolerance", "none"):
        mode = "none"
    tol = Tolerance.of(extra.get("abs_eps"), extra.get("rel_eps"))
    replicas = extra.get("replicas")
    ok = isinstance(replicas, int) and 1 <= replicas <= MAX_REPLICAS and mode != "none"
    return cast(Mode, mode), tol, int(cast(int, replicas)) if ok else 1


def output_hashes(result: Mapping[str, Any]) -> dict[str, str]:
    """``path → sha256`` of a reported result's output files.

    >>> output_hashes({"outputs": [{"path": "/o/a", "sha256": "ab"}]})
    {'/o/a': 'ab'}
    """
    outputs = result.get("outputs") or []
    return {str(o["path"]): str(o["sha256"]) for o in outputs
            if isinstance(o, Mapping) and "path" in o and "sha256" in o}


def compare_results(mode: Mode, a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance,
                    read_blob: ReadBlob) -> rules.Comparison:
    """Compare two runs' reported outputs: hashes for ``deterministic``, numbers (read from
    the blob store) for ``tolerance``.

    >>> r = {"outputs": [{"path": "/o", "sha256": "aa"}]}
    >>> compare_results("deterministic", r, r, Tolerance(), lambda s: b"").match
    True
    """
    ha, hb = output_hashes(a), output_hashes(b)
    if mode == "deterministic" or ha == hb:
        return rules.compare_output_sets("deterministic", {k: v.encode() for k, v in ha.items()},
                                         {k: v.encode() for k, v in hb.items()})
    if ha.keys() != hb.keys():
        return rules.Comparison(False, "output files differ")
    return rules.compare_output_sets(mode, {k: read_blob(v) for k, v in ha.items()},
                                     {k: read_blob(v) for k, v in hb.items()}, tol)


def resolve(mode: Mode, first: Mapping[str, Any], audit: Mapping[str, Any],
            panel: Sequence[Mapping[str, Any]], tol: Tolerance,
            read_blob: ReadBlob) -> DisputeOutcome:
    """:func:`rules.resolve_dispute` over whole output sets; no panel → inconclusive.

    >>> good, bad = {"outputs": [{"path": "/o", "sha256": "g"}]}, {"outputs": []}
    >>> resolve("deterministic", bad, good, [good], Tolerance(), bytes.fromhex).verdict
    <Verdict.NODE_WRONG: 'node_wrong'>
    """
    def same(x: Mapping[str, Any], y: Mapping[str, Any]) -> bool:
        return compare_results(mode, x, y, tol, read_blob).match

    if same(first, audit):
        return DisputeOutcome(Verdict.AGREED)
    if not panel:
        return DisputeOutcome(Verdict.INCONCLUSIVE)
    # Map each run to a token so the core rule decides with its own (unanimity) logic.
    vf = [same(p, first) for p in panel]
    va = [same(p, audit) for p in panel]
    tokens = [b"first" if f and not a else b"audit" if a and not f else
              b"both" if f else b"other" for f, a in zip(vf, va, strict=True)]
    outcome = rules.resolve_dispute("deterministic", b"first", b"audit", tokens)
    return replace(outcome, votes_first=sum(vf), votes_audit=sum(va))


# --------------------------------------------------------------------- completion hooks


def after_completed(uow: UnitOfWork, job: Job, now: int) -> Job | None:
    """Called by ``finish_job`` after the ``completed`` record.

    An auditable job is recorded in the journal (a ``job.result`` entry that commits to
    its output hashes) and held: ``completed → verifying``. Returns None when the job
    settles as usual (verification ``none``, or an audit/tiebreak run: see ``settle_run``).
    """
    if run_of(uow, job.id) is not None:
        return None
    mode, _tol, replicas = spec_terms(uow.jobs.spec(job.spec_hash))
    if mode not in AUDITABLE or job.node is None:
        return None
    hashes = sorted(output_hashes(job.result).values())
    entry = uow.ledger.append(RESULT_ENTRY, job.id, now, (), {"node": job.node,
                                                             "outputs": hashes})
    _put(uow, VERIFICATION, job.id, {
        "job": job.id, "node": job.node, "mode": mode, "replicas": replicas,
        "status": "held", "result_seq": entry.seq, "result_hash": entry.hash,
        "held_at": now, "runs": [],
    })
    return job_services.record(uow, rules.hold_for_audit(job, now), kind="job.held")


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
    if client_paid and _succeeded(job) and job.state is JobState.COMPLETED:
        return job_services.record(uow, rules.hold_for_audit(job, now), kind="job.held")
    held = uow.ledger.balance(escrow(job.id))
    back = replica_reserve(str(run["of"])) if client_paid else AUDIT_POOL
    postings = (Posting(escrow(job.id), back, held),) if held else ()
    new = replace(job, state=JobState.SETTLED)
    tr = Transition(new, (Event("JobSettled", job.id, now, {"run": True}),), postings)
    return job_services.record(uow, tr, kind=RUN_SETTLED_ENTRY)


def _retire(uow: UnitOfWork, run: Job, now: int) -> Job:
    """End a run that left its chosen node (requeued, or taken by another node)."""
    row = run_of(uow, run.id) or {}
    _put(uow, AUDIT_RUN, run.id, {**row, "retired": True})
    ended = job_services.record(uow, job_rules.cancel(run, now, "reassigned"),
                                kind="job.cancelled")
    return settle_run(uow, ended, now) or ended


# --------------------------------------------------------------------- the maintenance pass


def candidates(uow: UnitOfWork, market: str, now: int) -> list[Candidate]:
    """Online, unjailed nodes in ``market`` as the auditor choice sees them.

    The registry has no operator keys or delegations yet: a node's operator is its own
    key (the stake owner) and ``recent_partners`` are the nodes it shared a verification
    with recently.
    """
    params = uow.markets.get(market)
    records = _all(uow, AUDIT_RECORD)
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


def _pick(uow: UnitOfWork, v: Mapping[str, Any], job: Job, now: int,
          cfg: VerificationConfig, *, exclude: Sequence[str], purpose: str,
          ) -> Candidate | None:
    records = _all(uow, AUDIT_RECORD)
    pool = [_recent(c, records.get(c.node_id), now, cfg.partner_window_s)
            for c in candidates(uow, job.market, now)]
    by_id = {c.node_id: c for c in pool}
    audited = by_id.get(str(v["node"]), Candidate(str(v["node"])))
    excluded = [by_id.get(n, Candidate(n)) for n in exclude]
    min_stake = uow.markets.get(job.market).min_stake
    return rules.choose_auditor(job.id, str(v["beacon"]), audited, pool, cfg.params,
                                exclude=excluded, purpose=purpose, min_stake=min_stake)


def _spawn_run(uow: UnitOfWork, job: Job, node: str, role: str, now: int, *,
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
    _put(uow, AUDIT_RUN, run_id, {"of": job.id, "role": role, "node": node, "at": now,
                                  "paid_by": "client" if client_paid else "pool"})
    job_services.record(uow, Transition(run, tr.events, postings), kind="job.posted", new=True)
    return job_services.assign_to(uow, run, node, now)


def _beacon(uow: UnitOfWork, pending: Sequence[dict[str, Any]], now: int) -> str:
    """The hash of the coordinator's ``verification.beacon`` entry, appended after all the
    pending jobs' result entries (one per pass, listing the jobs it decides)."""
    entry = uow.ledger.append(BEACON_ENTRY, "", now, (),
                              {"jobs": sorted(str(v["job"]) for v in pending)})
    return entry.hash


@dataclass
class TickResult:
    """What one pass did; ``assigned`` are runs whose nodes should be woken."""

    decided: int = 0
    released: int = 0
    passed: int = 0
    disputed: int = 0
    verdicts: int = 0
    assigned: list[Job] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"audit_decisions": self.decided, "audit_released": self.released,
                "audit_passed": self.passed, "audit_disputes": self.disputed,
                "audit_verdicts": self.verdicts}


def tick(uow: UnitOfWork, now: int, cfg: VerificationConfig, read_blob: ReadBlob) -> TickResult:
    """One verification pass over the held jobs: decide, start runs, compare, settle."""
    res = TickResult()
    held = uow.jobs.in_states([JobState.VERIFYING, JobState.DISPUTED])
    rows = {j.id: verification_of(uow, j.id) for j in held}
    pending = [v for v in rows.values() if v is not None and v["status"] == "held"]
    beacon = _beacon(uow, pending, now) if pending else ""
    for job in held:
        v = rows.get(job.id)
        if v is None:  # held by another code path: not ours to decide
            continue
        before = json.dumps(v, sort_keys=True)
        if v["status"] == "held":
            _decide(uow, job, v, beacon, now, cfg)
            res.decided += 1
        res.assigned += _advance(uow, job, v, now, cfg, read_blob, res)
        if json.dumps(v, sort_keys=True) != before:
            _put(uow, VERIFICATION, job.id, v)
    return res


def _decide(uow: UnitOfWork, job: Job, v: dict[str, Any], beacon: str, now: int,
            cfg: VerificationConfig) -> None:
    mode = cast(Mode, v["mode"])
    record = audit_record(uow, str(v["node"]), now)
    replicas = int(v.get("replicas", 1))
    if replicas > 1:  # the client asked (and paid) for redundant runs: always run them
        rate = 10_000
    elif cfg.force_rate_bps is not None:
        rate = cfg.force_rate_bps
    else:
        rate = rules.job_audit_rate_bps(mode, record, replicas, cfg.params)
    audited = rules.should_audit(job.id, beacon, rate)
    v.update(beacon=beacon, rate_bps=rate, draw=rules.audit_draw(job.id, beacon),
             audited=audited, decided_at=now,
             release_at=(job.finished_at or now) + cfg.params.audit_window,
             status="auditing" if audited else "waiting")


def _runs(uow: UnitOfWork, v: Mapping[str, Any], role: str, now: int
          ) -> list[tuple[dict[str, Any], Job]]:
    """The rows and jobs of ``role`` runs; a run that left its node is retired first."""
    out = []
    for r in v["runs"]:
        if r["role"] != role:
            continue
        run = uow.jobs.get(r["job"])
        if run.state in job_rules.OPEN and run.node != r["node"]:
            run = _retire(uow, run, now)
        out.append((r, run))
    return out


def _done(run: Job) -> bool:
    return run.state not in job_rules.OPEN


def _succeeded(run: Job) -> bool:
    return _done(run) and run.fault is None and not run.reason and bool(run.result)


def _advance(uow: UnitOfWork, job: Job, v: dict[str, Any], now: int, cfg: VerificationConfig,
             read_blob: ReadBlob, res: TickResult) -> list[Job]:
    status = v["status"]
    if status == "waiting":
        if now >= int(v["release_at"]):
            _release(uow, job, now, cfg, passed=False)
            v["status"] = "released"
            res.released += 1
        return []
    if status == "auditing":
        return _advance_audit(uow, job, v, now, cfg, read_blob, res)
    if status == "disputed":
        return _advance_dispute(uow, job, v, now, cfg, read_blob, res)
    return []


def _start_run(uow: UnitOfWork, job: Job, v: dict[str, Any], role: str, now: int,
               cfg: VerificationConfig, *, exclude: Sequence[str], slot: int) -> Job | None:
    tries = sum(1 for r in v["runs"] if r["role"] == role and r.get("slot", 0) == slot)
    purpose = "audit" if role == "audit" and slot == 0 else f"{role}:{slot}"
    pick = _pick(uow, v, job, now, cfg, exclude=exclude,
                 purpose=purpose if tries == 0 else f"{purpose}:retry:{tries}")
    if pick is None:
        return None
    client_paid = role == "audit" and _client_paid(v)
    run = _spawn_run(uow, job, pick.node_id, role, now, client_paid=client_paid)
    v["runs"].append({"job": run.id, "role": role, "node": pick.node_id, "slot": slot})
    return run


def _client_paid(v: Mapping[str, Any]) -> bool:
    """The client asked for redundant runs (``replicas`` > 1) and reserved their deposits."""
    return int(v.get("replicas", 1)) > 1


def _audit_slots(v: Mapping[str, Any]) -> int:
    """How many audit runs the job gets: its k − 1 replicas, or one sampled audit."""
    return max(1, int(v.get("replicas", 1)) - 1)


def _advance_audit(uow: UnitOfWork, job: Job, v: dict[str, Any], now: int,
                   cfg: VerificationConfig, read_blob: ReadBlob, res: TickResult) -> list[Job]:
    audits = _runs(uow, v, "audit", now)
    if any(not _done(run) for _row, run in audits):
        return []
    slots = range(_audit_slots(v))
    tries = {s: [run for row, run in audits if int(row.get("slot", 0)) == s] for s in slots}
    filled = {s: next((r for r in reversed(tries[s]) if _succeeded(r)), None) for s in slots}
    open_slots = [s for s in slots if filled[s] is None and len(tries[s]) <= MAX_RUN_RETRIES]
    if open_slots and now < int(v["release_at"]):
        involved = [str(job.node), *(str(r.node) for _row, r in audits if r.node)]
        started = []
        for slot in open_slots:
            run = _start_run(uow, job, v, "audit", now, cfg, exclude=involved, slot=slot)
            if run is not None and run.node is not None:
                started.append(run)
                involved.append(run.node)
        return started  # none: nobody is eligible yet; try again on the next pass
    ok = [r for r in filled.values() if r is not None]
    if not ok:  # nobody could audit within the window (or every try failed): pay as unaudited
        _release(uow, job, now, cfg, passed=False)
        v.update(status="released", reason="no auditor could run the job")
        res.released += 1
        _end_replicas(uow, job, v, now, winner=None, read_blob=read_blob)
        return []
    mode = cast(Mode, v["mode"])
    _mode, tol, _ = spec_terms(uow.jobs.spec(job.spec_hash))
    compared = [(r, compare_results(mode, job.result, r.result, tol, read_blob)) for r in ok]
    audit, cmp = next(((r, c) for r, c in compared if not c.match), compared[0])
    v["auditor"], v["audit_job"] = audit.node, audit.id
    v["auditors"] = [str(r.node) for r in ok]
    v["comparison"] = {"match": cmp.match, "reason": cmp.reason,
                       "max_abs_error": cmp.max_abs_error}
    if cmp.match:  # every run agrees with the node
        _release(uow, job, now, cfg, passed=True)
        if not _client_paid(v):
            _pay_runners(uow, job, [str(audit.node)], now)
        _end_replicas(uow, job, v, now, winner=job.result, read_blob=read_blob)
        _record_audit(uow, str(job.node), now, passed=True)
        for r in ok:
            _note_record(uow, str(r.node), now, faulted=None, partners=[str(job.node)])
        v.update(status="passed", verdict=str(Verdict.AGREED))
        res.passed += 1
        return []
    job_services.record(uow, rules.open_dispute(job, now, str(audit.node)), kind="job.disputed")
    v["status"] = "disputed"
    res.disputed += 1
    return _advance_dispute(uow, uow.jobs.get(job.id), v, now, cfg, read_blob, res)


def _advance_dispute(uow: UnitOfWork, job: Job, v: dict[str, Any], now: int,
                     cfg: VerificationConfig, read_blob: ReadBlob,
                     res: TickResult) -> list[Job]:
    auditor = str(v["auditor"])
    panel_runs = _runs(uow, v, "tiebreak", now)
    if any(not _done(run) for _row, run in panel_runs):
        return []
    started: list[Job] = []
    if not v.get("panel_closed"):
        filled = {int(row["slot"]) for row, run in panel_runs if _succeeded(run)}
        involved = [auditor, *(str(n) for n in v.get("auditors", [])),
                    *(str(row["node"]) for row, _run in panel_runs)]
        for slot in range(cfg.params.tiebreakers):
            tries = sum(1 for row, _run in panel_runs if int(row["slot"]) == slot)
            if slot in filled or tries > MAX_RUN_RETRIES:
                continue
            run = _start_run(uow, job, v, "tiebreak", now, cfg, exclude=involved, slot=slot)
            if run is not None and run.node is not None:
                started.append(run)
                involved.append(run.node)
        if started:
            return started
        v["panel_closed"] = True  # nobody else is eligible: decide with the panel we have
    mode = cast(Mode, v["mode"])
    _mode, tol, _ = spec_terms(uow.jobs.spec(job.spec_hash))
    panel = [run for _row, run in panel_runs if _succeeded(run)]
    audit = uow.jobs.get(str(v["audit_job"]))
    outcome = resolve(mode, job.result, audit.result, [r.result for r in panel], tol, read_blob)
    _settle_verdict(uow, job, v, outcome, auditor, [str(r.node) for r in panel], now, cfg,
                    read_blob)
    res.verdicts += 1
    return []


def _release(uow: UnitOfWork, job: Job, now: int, cfg: VerificationConfig, *,
             passed: bool) -> Job:
    """Pay the held job through the usual settle path (outbox hooks, stakers, reputation)."""
    fee = _audit_fee_bps(uow, job)
    tr = rules.release_held(job, now, fee, audit_passed=passed, params=cfg.params)
    settled = job_services.record(uow, tr, kind="job.settled")
    economics.on_settled(uow, settled, now)
    _note_record(uow, str(job.node), now, faulted=False)
    return settled


def _audit_fee_bps(uow: UnitOfWork, job: Job) -> int:
    """The market's audit fee, or none for a job whose client paid its own replicas."""
    v = verification_of(uow, job.id)
    return 0 if v is not None and _client_paid(v) else uow.markets.get(job.market).audit_fee_bps


def _end_replicas(uow: UnitOfWork, job: Job, v: Mapping[str, Any], now: int, *,
                  winner: Mapping[str, Any] | None, read_blob: ReadBlob) -> None:
    """Settle the held replicas the client paid for, then return what is left of its reserve.

    A replica whose outputs agree with the winning result (every one when there is no
    winner: an inconclusive panel) is paid like any job, from its own escrow, so on Solana
    its runner's pay is a transfer from the client's token account like any payout. One
    that disagrees is refunded to the client.
    """
    mode = cast(Mode, v["mode"])
    _mode, tol, _ = spec_terms(uow.jobs.spec(job.spec_hash))
    for row, run in _runs(uow, v, "audit", now):
        if run.state is not JobState.VERIFYING or (run_of(uow, run.id) or {}).get(
                "paid_by") != "client":
            continue
        agrees = winner is None or compare_results(mode, winner, run.result, tol,
                                                   read_blob).match
        settled = job_services.record(uow, rules.settle_replica(run, now, agrees=agrees),
                                      kind="job.settled")
        if agrees:
            economics.on_settled(uow, settled, now)
        row["paid"] = agrees
    return_reserve(uow, job, now)


def return_reserve(uow: UnitOfWork, job: Job, now: int) -> None:
    """Give the client back what its job's redundant runs did not use (``replicas:<job>``)."""
    left = uow.ledger.balance(replica_reserve(job.id))
    if left > 0:
        uow.ledger.append(RESERVE_RETURNED_ENTRY, job.id, now,
                          [Posting(replica_reserve(job.id), wallet(job.client), left)], {})


def _pay_runners(uow: UnitOfWork, job: Job, runners: Sequence[str], now: int) -> None:
    """Pay audit runs the job's gross each from ``audit_pool``, as far as it goes."""
    each, left, postings = rules.gross_pay(job), uow.ledger.balance(AUDIT_POOL), []
    for r in runners:
        amount = min(each, left)
        if amount > 0:
            postings.append(Posting(AUDIT_POOL, wallet(r), amount))
            left -= amount
    if postings:
        uow.ledger.append("audit.paid", job.id, now, postings, {"runners": list(runners)})


def _settle_verdict(uow: UnitOfWork, job: Job, v: dict[str, Any], outcome: DisputeOutcome,
                    auditor: str, panel: Sequence[str], now: int,
                    cfg: VerificationConfig, read_blob: ReadBlob) -> None:
    node = str(job.node)
    verdict = uow.ledger.append(VERDICT_ENTRY, job.id, now, (), {
        "verdict": str(outcome.verdict), "node": node, "auditor": auditor,
        "panel": list(panel), "votes_first": outcome.votes_first,
        "votes_audit": outcome.votes_audit})
    if outcome.verdict is Verdict.AGREED:  # the panel could not make this happen, but be safe
        _release(uow, job, now, cfg, passed=True)
        _pay_runners(uow, job, [*([] if _client_paid(v) else [auditor]), *panel], now)
        _end_replicas(uow, job, v, now, winner=job.result, read_blob=read_blob)
        v.update(status="passed", verdict=str(outcome.verdict), verdict_entry=verdict.hash)
        return
    ds = rules.settle_dispute(job, outcome, auditor=auditor, tiebreakers=panel,
                              verdict_entry_hash=verdict.hash, now=now,
                              audit_fee_bps=_audit_fee_bps(uow, job),
                              pool_balance=uow.ledger.balance(AUDIT_POOL),
                              auditor_paid_by_client=_client_paid(v))
    settled = job_services.record(uow, ds.transition, kind="job.settled")
    if outcome.verdict is not Verdict.NODE_WRONG:  # the node was paid: fees and reputation
        economics.on_settled(uow, settled, now)
    winner = {Verdict.NODE_WRONG: uow.jobs.get(str(v["audit_job"])).result,
              Verdict.AUDITOR_WRONG: job.result}.get(outcome.verdict)
    _end_replicas(uow, job, v, now, winner=winner, read_blob=read_blob)
    for cmd in ds.slashes:
        target = replace(job, node=cmd.node)
        economics.slash_for(uow, target, cmd.offence, now,
                            journal_hash=cmd.evidence.journal_hash, challenger=cmd.challenger)
    # co-assignment is remembered between the audited node and each of its runners (not
    # among the runners: sitting on a third node's panel together relates nobody)
    runners = [auditor, *panel]
    node_fault = outcome.verdict is not Verdict.AUDITOR_WRONG
    auditor_fault = outcome.verdict is not Verdict.NODE_WRONG
    _note_record(uow, node, now, faulted=node_fault, partners=runners)
    _note_record(uow, auditor, now, faulted=auditor_fault, partners=[node])
    if outcome.verdict is Verdict.NODE_WRONG:
        _record_audit(uow, node, now, passed=False)
    elif outcome.verdict is Verdict.AUDITOR_WRONG:
        _record_audit(uow, auditor, now, passed=False)
        _record_audit(uow, node, now, passed=True)
    for p in panel:
        _note_record(uow, p, now, faulted=None, partners=[node])
    v.update(status=str(outcome.verdict), verdict=str(outcome.verdict),
             verdict_entry=verdict.hash, panel=list(panel),
             slashed=[cmd.node for cmd in ds.slashes])


# --------------------------------------------------------------------- views


def view(uow: UnitOfWork, job_id: str, actor: str) -> dict[str, Any]:
    """What the client sees of its job's verification."""
    job = job_services.get_job_for(uow, job_id, actor)
    mode, _tol, _replicas = spec_terms(uow.jobs.spec(job.spec_hash))
    v = verification_of(uow, job_id)
    if v is None:
        return {"job": job_id, "mode": mode, "status": "not_verified" if mode == "none"
                else "not_held", "state": job.state.value}
    keep = ("status", "mode", "replicas", "rate_bps", "audited", "beacon", "result_hash",
            "release_at", "auditor", "auditors", "audit_job", "panel", "verdict",
            "verdict_entry", "comparison", "slashed", "reason")
    out = {k: v[k] for k in keep if k in v}
    out.update(job=job_id, state=job.state.value,
               runs=[{"job": r["job"], "role": r["role"], "node": r["node"],
                      "slot": r.get("slot", 0),
                      "paid_by": "client" if r["role"] == "audit" and _client_paid(v)
                      else "pool", **({"paid": r["paid"]} if "paid" in r else {})}
                     for r in v["runs"]])
    return out


def summary(uow: UnitOfWork) -> dict[str, Any]:
    """Counts by status, the audit pool, and the audit overhead in compute seconds."""
    rows = _all(uow, VERIFICATION)
    runs = _all(uow, AUDIT_RUN)
    by_status: dict[str, int] = {}
    for v in rows.values():
        by_status[str(v["status"])] = by_status.get(str(v["status"]), 0) + 1
    run_seconds = 0
    for run_id in runs:
        run_seconds += uow.jobs.get(run_id).seconds_used
    all_seconds = int(uow.conn.execute(select(func.sum(t.jobs.c.seconds_used))).scalar() or 0)
    return {
        "jobs_held": len(rows), "by_status": by_status, "audit_runs": len(runs),
        "audit_pool": uow.ledger.balance(AUDIT_POOL),
        "audit_compute_seconds": run_seconds, "all_compute_seconds": all_seconds,
        "audit_overhead": round(run_seconds / all_seconds, 4) if all_seconds else 0.0,
    }

