"""Verification use cases: hold auditable jobs, sample audits from the journal, run audit
and tiebreak jobs, compare their outputs, and settle the verdict.

The rules are in :mod:`nosgrid.core.verification`; this module loads, calls them and saves.
Its state lives in ``protocol_state`` rows, never in a field a node can see (listed in
:mod:`.audit_runs`, which also picks, posts and settles the run jobs). A job whose client
asked for ``replicas`` gets k − 1 client-paid runs instead of a sampled audit.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from sqlalchemy import func, select

from nosgrid.coordinator.services import economics
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services.audit_runs import (
    AUDIT_RECORD,
    AUDIT_RUN,
    MAX_RUN_RETRIES,
    VERIFICATION,
    VerificationConfig,
    all_rows,
    audit_slots,
    done,
    get_row,
    paid_by_client,
    put_row,
    return_reserve,
    run_of,
    runs_of,
    start_run,
    succeeded,
    verification_of,
)
from nosgrid.coordinator.services.comparison import spec_terms
from nosgrid.core import audit_settlement as settle_rules
from nosgrid.core import reputation as rep_rules
from nosgrid.core import verification as rules
from nosgrid.core.jobs.state import Job, JobState
from nosgrid.core.ledger import Posting, wallet
from nosgrid.core.verification import (
    AUDIT_POOL,
    AuditRecord,
    DisputeOutcome,
    Mode,
    ReadBlob,
    Verdict,
    compare_results,
    output_hashes,
    resolve,
)
from nosgrid.settlement.backend import settlement_of
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork

log = logging.getLogger(__name__)

#: journal entry kinds written here
RESULT_ENTRY: Final = "job.result"
BEACON_ENTRY: Final = "verification.beacon"
VERDICT_ENTRY: Final = "audit.verdict"
AUDITABLE: Final = ("deterministic", "tolerance")
PARTNER_MEMORY: Final = 50

# --------------------------------------------------------------------- node records


def audit_record(uow: UnitOfWork, node: str, now: int) -> AuditRecord:
    row = get_row(uow, AUDIT_RECORD, node) or {}
    rep = rep_rules.score(uow.economics.reputation(node), now)
    return AuditRecord(int(row.get("clean_jobs", 0)), rep)


def _note_record(uow: UnitOfWork, node: str, now: int, *, faulted: bool | None,
                 partners: Sequence[str] = ()) -> None:
    """Count one verified job (``faulted`` None: only remember ``partners``)."""
    row = get_row(uow, AUDIT_RECORD, node) or {"clean_jobs": 0, "partners": []}
    if faulted is not None:
        rec = rules.next_record(AuditRecord(int(row["clean_jobs"])), faulted=faulted,
                                reputation=0.5)
        row["clean_jobs"] = rec.clean_jobs
        row["faults"] = int(row.get("faults", 0)) + (1 if faulted else 0)
    known = [p for p in row.get("partners", []) if p[0] not in partners]
    row["partners"] = (known + [[p, now] for p in partners if p != node])[-PARTNER_MEMORY:]
    put_row(uow, AUDIT_RECORD, node, row)


def _record_audit(uow: UnitOfWork, node: str, now: int, *, passed: bool) -> None:
    rep = rep_rules.record_audit(uow.economics.reputation(node), now, passed=passed)
    uow.economics.save_reputation(node, rep)


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
    put_row(uow, VERIFICATION, job.id, {
        "job": job.id, "node": job.node, "mode": mode, "replicas": replicas,
        "status": "held", "result_seq": entry.seq, "result_hash": entry.hash,
        "held_at": now, "runs": [],
    })
    return job_services.record(uow, settle_rules.hold_for_audit(job, now), kind="job.held")


# --------------------------------------------------------------------- the maintenance pass


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
            put_row(uow, VERIFICATION, job.id, v)
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


def _advance(uow: UnitOfWork, job: Job, v: dict[str, Any], now: int, cfg: VerificationConfig,
             read_blob: ReadBlob, res: TickResult) -> list[Job]:
    status = v["status"]
    if status == "waiting":
        if now >= int(v["release_at"]):
            _release(uow, job, v, now, cfg, passed=False)
            v["status"] = "released"
            res.released += 1
        return []
    if status == "auditing":
        return _advance_audit(uow, job, v, now, cfg, read_blob, res)
    if status == "disputed":
        return _advance_dispute(uow, job, v, now, cfg, read_blob, res)
    return []


def _advance_audit(uow: UnitOfWork, job: Job, v: dict[str, Any], now: int,
                   cfg: VerificationConfig, read_blob: ReadBlob, res: TickResult) -> list[Job]:
    audits = runs_of(uow, v, "audit", now)
    if any(not done(run) for _row, run in audits):
        return []
    slots = range(audit_slots(v))
    tries = {s: [run for row, run in audits if int(row.get("slot", 0)) == s] for s in slots}
    filled = {s: next((r for r in reversed(tries[s]) if succeeded(r)), None) for s in slots}
    open_slots = [s for s in slots if filled[s] is None and len(tries[s]) <= MAX_RUN_RETRIES]
    if open_slots and now < int(v["release_at"]):
        involved = [str(job.node), *(str(r.node) for _row, r in audits if r.node)]
        started = []
        for slot in open_slots:
            run = start_run(uow, job, v, "audit", now, cfg, exclude=involved, slot=slot)
            if run is not None and run.node is not None:
                started.append(run)
                involved.append(run.node)
        return started  # none: nobody is eligible yet; try again on the next pass
    ok = [r for r in filled.values() if r is not None]
    if not ok:  # nobody could audit within the window (or every try failed): pay as unaudited
        _release(uow, job, v, now, cfg, passed=False)
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
        _release(uow, job, v, now, cfg, passed=True)
        if not paid_by_client(v):
            _pay_runners(uow, job, [str(audit.node)], now)
        _end_replicas(uow, job, v, now, winner=job.result, read_blob=read_blob)
        _record_audit(uow, str(job.node), now, passed=True)
        for r in ok:
            _note_record(uow, str(r.node), now, faulted=None, partners=[str(job.node)])
        v.update(status="passed", verdict=str(Verdict.AGREED))
        res.passed += 1
        return []
    job_services.record(uow, settle_rules.open_dispute(job, now, str(audit.node)),
                        kind="job.disputed")
    v["status"] = "disputed"
    res.disputed += 1
    return _advance_dispute(uow, uow.jobs.get(job.id), v, now, cfg, read_blob, res)


def _advance_dispute(uow: UnitOfWork, job: Job, v: dict[str, Any], now: int,
                     cfg: VerificationConfig, read_blob: ReadBlob,
                     res: TickResult) -> list[Job]:
    auditor = str(v["auditor"])
    panel_runs = runs_of(uow, v, "tiebreak", now)
    if any(not done(run) for _row, run in panel_runs):
        return []
    started: list[Job] = []
    if not v.get("panel_closed"):
        filled = {int(row["slot"]) for row, run in panel_runs if succeeded(run)}
        involved = [auditor, *(str(n) for n in v.get("auditors", [])),
                    *(str(row["node"]) for row, _run in panel_runs)]
        for slot in range(cfg.params.tiebreakers):
            tries = sum(1 for row, _run in panel_runs if int(row["slot"]) == slot)
            if slot in filled or tries > MAX_RUN_RETRIES:
                continue
            run = start_run(uow, job, v, "tiebreak", now, cfg, exclude=involved, slot=slot)
            if run is not None and run.node is not None:
                started.append(run)
                involved.append(run.node)
        if started:
            return started
        v["panel_closed"] = True  # nobody else is eligible: decide with the panel we have
    mode = cast(Mode, v["mode"])
    _mode, tol, _ = spec_terms(uow.jobs.spec(job.spec_hash))
    panel = [run for _row, run in panel_runs if succeeded(run)]
    audit = uow.jobs.get(str(v["audit_job"]))
    outcome = resolve(mode, job.result, audit.result, [r.result for r in panel], tol, read_blob)
    _settle_verdict(uow, job, v, outcome, auditor, [str(r.node) for r in panel], now, cfg,
                    read_blob)
    res.verdicts += 1
    return []


def _release(uow: UnitOfWork, job: Job, v: Mapping[str, Any], now: int,
             cfg: VerificationConfig, *,
             passed: bool) -> Job:
    """Pay the held job through the usual settle path (outbox hooks, stakers, reputation)."""
    fee = _audit_fee_bps(uow, job, v)
    tr = settle_rules.release_held(job, now, fee, audit_passed=passed, params=cfg.params)
    settled = job_services.record(uow, tr, kind="job.settled")
    economics.on_settled(uow, settled, now)
    _note_record(uow, str(job.node), now, faulted=False)
    return settled


def _audit_fee_bps(uow: UnitOfWork, job: Job, v: Mapping[str, Any]) -> int:
    """The market's audit fee, or none for a job whose client paid its own replicas."""
    return 0 if paid_by_client(v) else uow.markets.get(job.market).audit_fee_bps


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
    for row, run in runs_of(uow, v, "audit", now):
        if run.state is not JobState.VERIFYING or (run_of(uow, run.id) or {}).get(
                "paid_by") != "client":
            continue
        agrees = winner is None or compare_results(mode, winner, run.result, tol,
                                                   read_blob).match
        settled = job_services.record(uow, settle_rules.settle_replica(run, now, agrees=agrees),
                                      kind="job.settled")
        if agrees:
            economics.on_settled(uow, settled, now)
        row["paid"] = agrees
    return_reserve(uow, job, now)


def _pay_runners(uow: UnitOfWork, job: Job, runners: Sequence[str], now: int) -> None:
    """Pay audit runs the job's gross each from ``audit_pool``, as far as it goes."""
    each, left, postings = settle_rules.gross_pay(job), uow.ledger.balance(AUDIT_POOL), []
    for r in runners:
        amount = min(each, left)
        if amount > 0:
            postings.append(Posting(AUDIT_POOL, wallet(r), amount))
            left -= amount
    if postings:
        entry = uow.ledger.append("audit.paid", job.id, now, postings,
                                  {"runners": list(runners)})
        settlement_of(uow).on_pool_payout(uow, entry)  # on Solana: from the audit vault


def _settle_verdict(uow: UnitOfWork, job: Job, v: dict[str, Any], outcome: DisputeOutcome,
                    auditor: str, panel: Sequence[str], now: int,
                    cfg: VerificationConfig, read_blob: ReadBlob) -> None:
    node = str(job.node)
    verdict = uow.ledger.append(VERDICT_ENTRY, job.id, now, (), {
        "verdict": str(outcome.verdict), "node": node, "auditor": auditor,
        "panel": list(panel), "votes_first": outcome.votes_first,
        "votes_audit": outcome.votes_audit})
    if outcome.verdict is Verdict.AGREED:  # the panel could not make this happen, but be safe
        _release(uow, job, v, now, cfg, passed=True)
        _pay_runners(uow, job, [*([] if paid_by_client(v) else [auditor]), *panel], now)
        _end_replicas(uow, job, v, now, winner=job.result, read_blob=read_blob)
        v.update(status="passed", verdict=str(outcome.verdict), verdict_entry=verdict.hash)
        return
    ds = settle_rules.settle_dispute(job, outcome, auditor=auditor, tiebreakers=panel,
                                     verdict_entry_hash=verdict.hash, now=now,
                                     audit_fee_bps=_audit_fee_bps(uow, job, v),
                                     pool_balance=uow.ledger.balance(AUDIT_POOL),
                                     auditor_paid_by_client=paid_by_client(v))
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
                      "paid_by": "client" if r["role"] == "audit" and paid_by_client(v)
                      else "pool", **({"paid": r["paid"]} if "paid" in r else {})}
                     for r in v["runs"]])
    return out


def summary(uow: UnitOfWork) -> dict[str, Any]:
    """Counts by status, the audit pool, and the audit overhead in compute seconds."""
    rows = all_rows(uow, VERIFICATION)
    runs = all_rows(uow, AUDIT_RUN)
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

