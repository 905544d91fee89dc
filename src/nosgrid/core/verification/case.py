"""A held job's verification as a typed state machine: the case, its table, ``advance``.

A job whose terms ask for verification is *held* when it completes (its node's pay stays
in escrow) and opens a :class:`VerificationCase`. Each maintenance pass calls the pure
:func:`advance` with what the service observed (the runs' states and results, the beacon,
who could run the job again) and gets back the new case and the :data:`Command` values the
service carries out, in order (post a run, release the pay, pay the runners, open the
dispute, record the verdict, settle it, slash, note audit records)::

    held ──decide──► waiting ──(window closes)──► released
      │                                             ▲ nobody could audit in the window
      └───decide──► auditing ──(every run agrees)──┼──────────────► passed
                        │                           │                  ▲ the panel agrees
                        └──(a run differs)──► disputed ──(panel)──► node_wrong
                                                                    auditor_wrong
                                                                    inconclusive

A sampled audit is one run on an unrelated, established node; a job whose client asked for
``replicas`` k gets k − 1 client-paid runs instead (any online, staked, unrelated node may
run those). A run that ends without a result is retried on another node, at most
:data:`MAX_RUN_RETRIES` times per slot. The rules used here (rates, draws, auditor choice,
comparison, the dispute verdict) are in :mod:`.sampling` and :mod:`.comparison`; the money
of each command is in :mod:`nosgrid.core.audit_settlement`.

>>> case = VerificationCase("j1", "n1", "deterministic", result_hash="ab" * 32)
>>> view = CaseView(result={"outputs": []}, beacon="cd" * 32, finished_at=100)
>>> step = advance(case, view, now=100, params=CaseParams(force_rate_bps=0))
>>> step.case.status, step.case.release_at, step.commands
(<CaseStatus.WAITING: 'waiting'>, 86500, ())
>>> later = advance(step.case, view, now=86_500, params=CaseParams())
>>> later.case.status, later.commands
(<CaseStatus.RELEASED: 'released'>, (Release(passed=False),))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Literal

from nosgrid.core.errors import IllegalTransition
from nosgrid.core.verification.comparison import (
    CompareResults,
    Comparison,
    DisputeOutcome,
    Verdict,
    resolve_with,
)
from nosgrid.core.verification.sampling import (
    DEFAULT_VERIFICATION,
    AuditRecord,
    Candidate,
    Mode,
    VerificationParams,
    audit_draw,
    choose_auditor,
    job_audit_rate_bps,
    should_audit,
)

#: a run that ends without a result is retried on another node at most this often
MAX_RUN_RETRIES: Final = 3
_NEWCOMER: Final = AuditRecord()


class CaseStatus(StrEnum):
    HELD = "held"  # the result is recorded; the audit is decided on the next pass
    WAITING = "waiting"  # not sampled: the pay is released when the window closes
    AUDITING = "auditing"  # audit (or replica) runs on unrelated nodes
    DISPUTED = "disputed"  # a run differed: a panel of tiebreak runs decides
    RELEASED = "released"  # paid unaudited (not sampled, or nobody could audit in time)
    PASSED = "passed"  # every run agreed with the node
    NODE_WRONG = "node_wrong"  # verdicts of a dispute (see comparison.Verdict)
    AUDITOR_WRONG = "auditor_wrong"
    INCONCLUSIVE = "inconclusive"


C = CaseStatus
#: action → statuses it may start from → the statuses it may lead to
CASE_TRANSITIONS: Final[Mapping[str, tuple[frozenset[CaseStatus], frozenset[CaseStatus]]]] = {
    "decide": (frozenset({C.HELD}), frozenset({C.WAITING, C.AUDITING})),
    "release": (frozenset({C.WAITING, C.AUDITING}), frozenset({C.RELEASED})),
    "pass": (frozenset({C.AUDITING, C.DISPUTED}), frozenset({C.PASSED})),
    "dispute": (frozenset({C.AUDITING}), frozenset({C.DISPUTED})),
    "judge": (frozenset({C.DISPUTED}),
              frozenset({C.NODE_WRONG, C.AUDITOR_WRONG, C.INCONCLUSIVE})),
}
#: nothing more happens to a case in these statuses (its job is settled)
CLOSED: Final = frozenset({C.RELEASED, C.PASSED, C.NODE_WRONG, C.AUDITOR_WRONG,
                           C.INCONCLUSIVE})
OPEN_CASES: Final = frozenset(set(C) - CLOSED)


class RunRole(StrEnum):
    AUDIT = "audit"  # a sampled audit, or a client-paid replica
    TIEBREAK = "tiebreak"  # a dispute panel run


PaidBy = Literal["client", "pool"]


@dataclass(frozen=True, slots=True)
class CaseRun:
    """One run of the case's job on another node (an ordinary job to its runner)."""

    job_id: str
    role: RunRole
    node: str
    slot: int = 0
    paid_by: PaidBy = "pool"
    #: a client-paid replica: paid (True) or refunded (False) once the verdict is in
    paid: bool | None = None
    #: it left its node (requeued, reassigned) and was taken back
    retired: bool = False


@dataclass(frozen=True, slots=True)
class VerificationCase:
    """The verification of one held job. Times are unix seconds."""

    job_id: str
    node: str
    mode: Mode
    replicas: int = 1
    status: CaseStatus = CaseStatus.HELD
    result_seq: int = 0
    result_hash: str = ""
    held_at: int = 0
    beacon: str = ""
    rate_bps: int = 0
    draw: int = 0
    audited: bool = False
    decided_at: int | None = None
    release_at: int | None = None
    runs: tuple[CaseRun, ...] = ()
    auditor: str | None = None
    audit_job: str | None = None
    auditors: tuple[str, ...] = ()
    comparison: Comparison | None = None
    panel_closed: bool = False
    panel: tuple[str, ...] = ()
    verdict: Verdict | None = None
    verdict_entry: str = ""
    slashed: tuple[str, ...] = ()
    reason: str = ""

    @property
    def client_paid(self) -> bool:
        """The client asked for redundant runs (``replicas`` > 1) and reserved them."""
        return self.replicas > 1

    @property
    def audit_slots(self) -> int:
        """How many audit runs the job gets: its k − 1 replicas, or one sampled audit."""
        return max(1, self.replicas - 1)

    def runs_of(self, role: RunRole) -> tuple[CaseRun, ...]:
        return tuple(r for r in self.runs if r.role is role)


@dataclass(frozen=True, slots=True)
class RunStatus:
    """What the service observed of one run's job."""

    done: bool  # the run is over (not queued, assigned or running)
    succeeded: bool = False  # it completed with a result
    left_node: bool = False  # still open, but no longer with the node chosen for it
    held: bool = False  # a client-paid replica that completed: held for the verdict
    result: Mapping[str, Any] = field(default_factory=dict)


def _no_pool() -> Sequence[Candidate]:
    return ()


def _hashes_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:
    same = a.get("outputs") == b.get("outputs")
    return Comparison(same, "" if same else "output hashes differ")


@dataclass(frozen=True, slots=True)
class CaseView:
    """What :func:`advance` may look at besides the case: all read by the service."""

    result: Mapping[str, Any]  # the audited node's result
    finished_at: int = 0  # when the audited job finished (the window starts then)
    beacon: str = ""  # this pass's beacon (decides a held case's draw)
    record: AuditRecord = _NEWCOMER  # the audited node's record (its audit rate)
    runs: Mapping[str, RunStatus] = field(default_factory=dict)
    #: online, unjailed nodes of the job's market, recent partners within the window
    pool: Callable[[], Sequence[Candidate]] = _no_pool
    min_stake: int = 0
    compare: CompareResults = _hashes_equal


@dataclass(frozen=True, slots=True)
class CaseParams:
    """The coordinator's verification settings (``CoordinatorSettings``)."""

    rules: VerificationParams = DEFAULT_VERIFICATION
    #: force this audit rate (bps) for every auditable job; None → the adaptive rate
    force_rate_bps: int | None = None


# --------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class PostRun:
    """Post ``run`` (a copy of the job, same client and spec) assigned to ``run.node``."""

    run: CaseRun


@dataclass(frozen=True, slots=True)
class RetireRun:
    """Take back a run that left its node; its escrow returns to its funder."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Release:
    """Settle the held job: pay its node (``passed``: after an agreeing audit)."""

    passed: bool


@dataclass(frozen=True, slots=True)
class PayRunners:
    """Pay these runners the job's gross each from ``audit_pool``, as far as it goes."""

    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SettleReplica:
    """Settle a held client-paid replica: paid like any job, or refunded whole."""

    job_id: str
    agrees: bool


@dataclass(frozen=True, slots=True)
class OpenDispute:
    auditor: str


@dataclass(frozen=True, slots=True)
class RecordVerdict:
    """Write the verdict in the journal (its hash is the evidence of any slash)."""

    outcome: DisputeOutcome
    auditor: str
    panel: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SettleDispute:
    """Settle the disputed job per the verdict; slash the losing side, if any."""

    outcome: DisputeOutcome
    auditor: str
    panel: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordAudit:
    """The node's reputation learns an audit passed or failed."""

    node: str
    passed: bool


@dataclass(frozen=True, slots=True)
class NoteRecord:
    """Count one verified job for ``node`` (``faulted`` None: only remember partners)."""

    node: str
    faulted: bool | None
    partners: tuple[str, ...] = ()


Command = (PostRun | RetireRun | Release | PayRunners | SettleReplica | OpenDispute
           | RecordVerdict | SettleDispute | RecordAudit | NoteRecord)


@dataclass(frozen=True, slots=True)
class Step:
    case: VerificationCase
    commands: tuple[Command, ...] = ()


def _move(case: VerificationCase, action: str, target: CaseStatus,
          **changes: Any) -> VerificationCase:
    allowed, targets = CASE_TRANSITIONS[action]
    if case.status not in allowed or target not in targets:
        raise IllegalTransition(
            f"cannot {action} the verification of job {case.job_id}: it is "
            f"{case.status.value}", job_id=case.job_id, state=case.status.value, action=action)
    return replace(case, status=target, **changes)


def run_id(job_id: str, role: RunRole, slot: int, attempt: int) -> str:
    """The job id of a run: derived from what it checks, so anyone can recompute it.

    >>> len(run_id("j1", RunRole.AUDIT, 0, 0))
    24
    """
    raw = f"nosgrid-run\x00{job_id}\x00{role.value}\x00{slot}\x00{attempt}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


# --------------------------------------------------------------------- advance


def advance(case: VerificationCase, view: CaseView, now: int, params: CaseParams) -> Step:
    """One pass over an open case: the new case and the commands to carry out, in order."""
    out: list[Command] = []
    if case.status is C.HELD:
        case = _decide(case, view, now, params)
    if case.status is C.WAITING:
        if case.release_at is not None and now >= case.release_at:
            out.append(Release(passed=False))
            case = _move(case, "release", C.RELEASED)
    elif case.status is C.AUDITING:
        case = _audit(case, view, now, params, out)
    elif case.status is C.DISPUTED:
        case = _dispute(case, view, now, params, out)
    return Step(case, tuple(out))


def _decide(case: VerificationCase, view: CaseView, now: int,
            params: CaseParams) -> VerificationCase:
    if case.client_paid:  # the client asked (and paid) for redundant runs: run them all
        rate = 10_000
    elif params.force_rate_bps is not None:
        rate = params.force_rate_bps
    else:
        rate = job_audit_rate_bps(case.mode, view.record, case.replicas, params.rules)
    audited = should_audit(case.job_id, view.beacon, rate)
    return _move(case, "decide", C.AUDITING if audited else C.WAITING,
                 beacon=view.beacon, rate_bps=rate, draw=audit_draw(case.job_id, view.beacon),
                 audited=audited, decided_at=now,
                 release_at=(view.finished_at or now) + params.rules.audit_window)


def _status(view: CaseView, run: CaseRun) -> RunStatus:
    if run.retired:
        return RunStatus(done=True)
    return view.runs.get(run.job_id, RunStatus(done=False))


def _retire_left(case: VerificationCase, view: CaseView, role: RunRole,
                 out: list[Command]) -> VerificationCase:
    """Take back the runs of ``role`` that left the node chosen for them."""
    runs = list(case.runs)
    for i, run in enumerate(runs):
        if run.role is role and not run.retired and _status(view, run).left_node:
            out.append(RetireRun(run.job_id))
            runs[i] = replace(run, retired=True)
    return replace(case, runs=tuple(runs))


def _start_run(case: VerificationCase, view: CaseView, params: CaseParams, role: RunRole,
               slot: int, exclude: Sequence[str]) -> CaseRun | None:
    """Choose who runs the job again for ``slot`` (by the beacon, among unrelated nodes)."""
    tries = sum(1 for r in case.runs if r.role is role and r.slot == slot)
    purpose = "audit" if role is RunRole.AUDIT and slot == 0 else f"{role.value}:{slot}"
    if tries:
        purpose = f"{purpose}:retry:{tries}"
    rules = params.rules
    if case.client_paid:  # paid redundancy must work in a young market too (as BOINC's)
        rules = replace(rules, auditor_min_clean_jobs=0, auditor_min_reputation=0.0)
    pool = view.pool()
    by_id = {c.node_id: c for c in pool}
    audited = by_id.get(case.node, Candidate(case.node))
    excluded = [by_id.get(n, Candidate(n)) for n in exclude]
    pick = choose_auditor(case.job_id, case.beacon, audited, pool, rules, exclude=excluded,
                          purpose=purpose, min_stake=view.min_stake)
    if pick is None:
        return None
    paid_by: PaidBy = "client" if role is RunRole.AUDIT and case.client_paid else "pool"
    return CaseRun(run_id(case.job_id, role, slot, tries), role, pick.node_id, slot, paid_by)


def _settle_replicas(case: VerificationCase, view: CaseView,
                     winner: Mapping[str, Any] | None,
                     out: list[Command]) -> VerificationCase:
    """Settle the held replicas the client paid for: paid when they agree with the winner
    (every one when there is no winner: an inconclusive panel), refunded otherwise."""
    runs = list(case.runs)
    for i, run in enumerate(runs):
        status = _status(view, run)
        if run.role is not RunRole.AUDIT or run.paid_by != "client" or not status.held:
            continue
        agrees = winner is None or view.compare(winner, status.result).match
        out.append(SettleReplica(run.job_id, agrees))
        runs[i] = replace(run, paid=agrees)
    return replace(case, runs=tuple(runs))


def _audit(case: VerificationCase, view: CaseView, now: int, params: CaseParams,
           out: list[Command]) -> VerificationCase:
    case = _retire_left(case, view, RunRole.AUDIT, out)
    audits = case.runs_of(RunRole.AUDIT)
    if any(not _status(view, r).done for r in audits):
        return case
    slots = range(case.audit_slots)
    tries = {s: [r for r in audits if r.slot == s] for s in slots}
    filled = {s: next((r for r in reversed(tries[s]) if _status(view, r).succeeded), None)
              for s in slots}
    open_slots = [s for s in slots if filled[s] is None and len(tries[s]) <= MAX_RUN_RETRIES]
    if open_slots and case.release_at is not None and now < case.release_at:
        involved = [case.node, *(r.node for r in audits)]
        for slot in open_slots:
            run = _start_run(case, view, params, RunRole.AUDIT, slot, involved)
            if run is not None:
                out.append(PostRun(run))
                case = replace(case, runs=(*case.runs, run))
                involved.append(run.node)
        return case  # none started: nobody is eligible yet; try again on the next pass
    ok = [r for r in filled.values() if r is not None]
    if not ok:  # nobody could audit within the window (or every try failed): unaudited
        out.append(Release(passed=False))
        case = _move(case, "release", C.RELEASED, reason="no auditor could run the job")
        return _settle_replicas(case, view, None, out)
    compared = [(r, view.compare(view.result, _status(view, r).result)) for r in ok]
    audit, cmp = next(((r, c) for r, c in compared if not c.match), compared[0])
    case = replace(case, auditor=audit.node, audit_job=audit.job_id,
                   auditors=tuple(r.node for r in ok), comparison=cmp)
    if cmp.match:  # every run agrees with the node
        out.append(Release(passed=True))
        if not case.client_paid:
            out.append(PayRunners((audit.node,)))
        case = _settle_replicas(case, view, view.result, out)
        out.append(RecordAudit(case.node, passed=True))
        out += [NoteRecord(r.node, None, (case.node,)) for r in ok]
        return _move(case, "pass", C.PASSED, verdict=Verdict.AGREED)
    out.append(OpenDispute(audit.node))
    case = _move(case, "dispute", C.DISPUTED)
    return _dispute(case, view, now, params, out)


def _dispute(case: VerificationCase, view: CaseView, now: int, params: CaseParams,
             out: list[Command]) -> VerificationCase:
    auditor = str(case.auditor)
    case = _retire_left(case, view, RunRole.TIEBREAK, out)
    panel_runs = case.runs_of(RunRole.TIEBREAK)
    if any(not _status(view, r).done for r in panel_runs):
        return case
    if not case.panel_closed:
        filled = {r.slot for r in panel_runs if _status(view, r).succeeded}
        involved = [auditor, *case.auditors, *(r.node for r in panel_runs)]
        started = False
        for slot in range(params.rules.tiebreakers):
            tries = sum(1 for r in panel_runs if r.slot == slot)
            if slot in filled or tries > MAX_RUN_RETRIES:
                continue
            run = _start_run(case, view, params, RunRole.TIEBREAK, slot, involved)
            if run is not None:
                out.append(PostRun(run))
                case = replace(case, runs=(*case.runs, run))
                involved.append(run.node)
                started = True
        if started:
            return case
        case = replace(case, panel_closed=True)  # nobody else is eligible: decide now
    panel = [r for r in panel_runs if _status(view, r).succeeded]
    audit_result = view.runs[str(case.audit_job)].result
    outcome = resolve_with(view.compare, view.result, audit_result,
                           [_status(view, r).result for r in panel])
    return _judge(case, view, outcome, auditor, tuple(r.node for r in panel), out)


def _judge(case: VerificationCase, view: CaseView, outcome: DisputeOutcome, auditor: str,
           panel: tuple[str, ...], out: list[Command]) -> VerificationCase:
    node = case.node
    out.append(RecordVerdict(outcome, auditor, panel))
    if outcome.verdict is Verdict.AGREED:  # the panel could not make this happen; be safe
        out.append(Release(passed=True))
        out.append(PayRunners((*(() if case.client_paid else (auditor,)), *panel)))
        case = _settle_replicas(case, view, view.result, out)
        return _move(case, "pass", C.PASSED, verdict=outcome.verdict)
    out.append(SettleDispute(outcome, auditor, panel))
    winner = {Verdict.NODE_WRONG: view.runs[str(case.audit_job)].result,
              Verdict.AUDITOR_WRONG: view.result}.get(outcome.verdict)
    case = _settle_replicas(case, view, winner, out)
    # co-assignment is remembered between the audited node and each of its runners (not
    # among the runners: sitting on a third node's panel together relates nobody)
    out.append(NoteRecord(node, outcome.verdict is not Verdict.AUDITOR_WRONG,
                          (auditor, *panel)))
    out.append(NoteRecord(auditor, outcome.verdict is not Verdict.NODE_WRONG, (node,)))
    if outcome.verdict is Verdict.NODE_WRONG:
        out.append(RecordAudit(node, passed=False))
    elif outcome.verdict is Verdict.AUDITOR_WRONG:
        out += [RecordAudit(auditor, passed=False), RecordAudit(node, passed=True)]
    out += [NoteRecord(p, None, (node,)) for p in panel]
    slashed = {Verdict.NODE_WRONG: (node,), Verdict.AUDITOR_WRONG: (auditor,)}
    return _move(case, "judge", C(outcome.verdict.value), verdict=outcome.verdict,
                 panel=panel, slashed=slashed.get(outcome.verdict, ()))
