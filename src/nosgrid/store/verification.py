"""Verification cases, their runs, and nodes' audit records (``core/verification/case.py``).

Statements only; the rules own the shapes. A case is saved whole (its row and its runs)
in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select

from nosgrid.core.jobs.state import JobState
from nosgrid.core.verification.case import (
    OPEN_CASES,
    CaseRun,
    CaseStatus,
    RunRole,
    VerificationCase,
)
from nosgrid.core.verification.comparison import Comparison, Verdict
from nosgrid.store import tables as t
from nosgrid.store.repositories import upsert

_C, _R = t.verification_cases, t.verification_runs


def _case_row(case: VerificationCase) -> dict[str, Any]:
    cmp = case.comparison
    return {
        "job_id": case.job_id, "node": case.node, "mode": case.mode,
        "replicas": case.replicas, "status": case.status.value,
        "result_seq": case.result_seq, "result_hash": case.result_hash,
        "held_at": case.held_at, "beacon": case.beacon, "rate_bps": case.rate_bps,
        "draw": case.draw, "audited": case.audited, "decided_at": case.decided_at,
        "release_at": case.release_at, "auditor": case.auditor, "audit_job": case.audit_job,
        "auditors": json.dumps(list(case.auditors)),
        "comparison": None if cmp is None else json.dumps(
            {"match": cmp.match, "reason": cmp.reason, "max_abs_error": cmp.max_abs_error}),
        "panel_closed": case.panel_closed, "panel": json.dumps(list(case.panel)),
        "verdict": None if case.verdict is None else case.verdict.value,
        "verdict_entry": case.verdict_entry, "slashed": json.dumps(list(case.slashed)),
        "reason": case.reason,
    }


def _run_of(r: Any) -> CaseRun:
    return CaseRun(str(r.job_id), RunRole(r.role), str(r.node), int(r.slot), r.paid_by,
                   None if r.paid is None else bool(r.paid), bool(r.retired))


def _case_of(r: Any, runs: Sequence[CaseRun]) -> VerificationCase:
    cmp = None if r.comparison is None else json.loads(r.comparison)
    return VerificationCase(
        job_id=str(r.job_id), node=str(r.node), mode=r.mode, replicas=int(r.replicas),
        status=CaseStatus(r.status), result_seq=int(r.result_seq),
        result_hash=str(r.result_hash), held_at=int(r.held_at), beacon=str(r.beacon),
        rate_bps=int(r.rate_bps), draw=int(r.draw), audited=bool(r.audited),
        decided_at=r.decided_at, release_at=r.release_at, runs=tuple(runs),
        auditor=r.auditor, audit_job=r.audit_job, auditors=tuple(json.loads(r.auditors)),
        comparison=None if cmp is None else Comparison(bool(cmp["match"]), str(cmp["reason"]),
                                                       float(cmp["max_abs_error"])),
        panel_closed=bool(r.panel_closed), panel=tuple(json.loads(r.panel)),
        verdict=None if r.verdict is None else Verdict(r.verdict),
        verdict_entry=str(r.verdict_entry), slashed=tuple(json.loads(r.slashed)),
        reason=str(r.reason))


class VerificationRepo:
    """Cases and runs (``verification_*``), audit records and partners (``audit_*``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- cases ----------------------------------------------------------------------

    def _load(self, rows: Sequence[Any]) -> list[VerificationCase]:
        if not rows:
            return []
        ids = [r.job_id for r in rows]
        runs: dict[str, list[CaseRun]] = {}
        for r in self.conn.execute(select(_R).where(_R.c.case_job.in_(ids))
                                   .order_by(_R.c.case_job, _R.c.seq)):
            runs.setdefault(str(r.case_job), []).append(_run_of(r))
        return [_case_of(r, runs.get(str(r.job_id), [])) for r in rows]

    def case(self, job_id: str) -> VerificationCase | None:
        rows = list(self.conn.execute(select(_C).where(_C.c.job_id == job_id)))
        found = self._load(rows)
        return found[0] if found else None

    def open_cases(self) -> list[VerificationCase]:
        """Cases still to be decided, oldest first."""
        rows = list(self.conn.execute(
            select(_C).where(_C.c.status.in_([s.value for s in OPEN_CASES]))
            .order_by(_C.c.held_at, _C.c.job_id)))
        return self._load(rows)

    def save(self, case: VerificationCase) -> None:
        """Write the case and its runs (new runs are added, changed ones updated)."""
        row = _case_row(case)
        self.conn.execute(upsert(self.conn, _C, row, ["job_id"]))
        for seq, run in enumerate(case.runs):
            values = {"job_id": run.job_id, "case_job": case.job_id, "seq": seq,
                      "role": run.role.value, "node": run.node, "slot": run.slot,
                      "paid_by": run.paid_by, "paid": run.paid, "retired": run.retired}
            self.conn.execute(upsert(self.conn, _R, values, ["job_id"]))

    def counts_by_status(self) -> dict[str, int]:
        rows = self.conn.execute(select(_C.c.status, func.count()).group_by(_C.c.status))
        return {str(status): int(n) for status, n in rows}

    # -- runs -----------------------------------------------------------------------

    def run(self, job_id: str) -> tuple[str, CaseRun] | None:
        """``(the job it checks, the run)`` when ``job_id`` is a verification run."""
        r = self.conn.execute(select(_R).where(_R.c.job_id == job_id)).first()
        return None if r is None else (str(r.case_job), _run_of(r))

    def pool_funded_runs(self, job_ids: Iterable[str]) -> set[str]:
        """Which of ``job_ids`` are runs ``audit_pool`` funds (their escrow is the pool's)."""
        ids = list(job_ids)
        if not ids:
            return set()
        rows = self.conn.execute(select(_R.c.job_id).where(_R.c.job_id.in_(ids),
                                                           _R.c.paid_by == "pool"))
        return {str(r.job_id) for r in rows}

    def open_pool_run_ids(self) -> list[str]:
        """Pool-funded runs whose job has not settled (their escrow still holds pool NOS)."""
        rows = self.conn.execute(select(_R.c.job_id).join(t.jobs, t.jobs.c.id == _R.c.job_id)
                                 .where(_R.c.paid_by == "pool",
                                        t.jobs.c.state != JobState.SETTLED.value))
        return [str(r.job_id) for r in rows]

    def run_stats(self) -> tuple[int, int]:
        """(number of runs, their compute seconds)."""
        row = self.conn.execute(
            select(func.count(), func.coalesce(func.sum(t.jobs.c.seconds_used), 0))
            .select_from(_R.join(t.jobs, t.jobs.c.id == _R.c.job_id))).one()
        return int(row[0]), int(row[1])

    # -- audit records --------------------------------------------------------------

    def record(self, node: str) -> tuple[int, int]:
        """``(clean jobs since its last fault, faults)`` of ``node``."""
        r = self.conn.execute(select(t.audit_records).where(
            t.audit_records.c.node == node)).first()
        return (0, 0) if r is None else (int(r.clean_jobs), int(r.faults))

    def clean_jobs(self) -> dict[str, int]:
        return {str(r.node): int(r.clean_jobs)
                for r in self.conn.execute(select(t.audit_records))}

    def save_record(self, node: str, clean_jobs: int, faults: int) -> None:
        self.conn.execute(upsert(self.conn, t.audit_records, {
            "node": node, "clean_jobs": clean_jobs, "faults": faults}, ["node"]))

    def partners(self, since: int) -> dict[str, set[str]]:
        """Each node's partners in a verification at or after ``since``."""
        out: dict[str, set[str]] = {}
        for r in self.conn.execute(select(t.audit_partners).where(
                t.audit_partners.c.at >= since)):
            out.setdefault(str(r.node), set()).add(str(r.partner))
        return out

    def note_partners(self, node: str, partners: Iterable[str], at: int, keep: int) -> None:
        """Remember ``partners`` of ``node`` at ``at``; keep its ``keep`` most recent."""
        p = t.audit_partners
        for partner in partners:
            if partner != node:
                self.conn.execute(upsert(self.conn, p, {"node": node, "partner": partner,
                                                        "at": at}, ["node", "partner"]))
        old = [r.partner for r in self.conn.execute(
            select(p.c.partner).where(p.c.node == node)
            .order_by(p.c.at.desc(), p.c.partner).offset(keep))]
        if old:
            self.conn.execute(delete(p).where(p.c.node == node, p.c.partner.in_(old)))

