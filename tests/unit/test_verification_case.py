"""The verification case as a pure state machine: table, paths, and an invariant.

The runs are simulated here as plain values (what the service would observe); the
comparison is by output hash. The real path, with nodes and Podman, is in
tests/integration/test_verification_real.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nosgrid.core.errors import IllegalTransition
from nosgrid.core.verification import Candidate, VerificationParams
from nosgrid.core.verification.case import (
    CLOSED,
    CaseParams,
    CaseStatus,
    CaseView,
    Command,
    OpenDispute,
    PayRunners,
    PostRun,
    RecordAudit,
    RecordVerdict,
    Release,
    RetireRun,
    RunStatus,
    SettleDispute,
    SettleReplica,
    VerificationCase,
    _move,
    advance,
    run_id,
)

BEACON = "ab" * 32
GOOD = {"outputs": [{"path": "/outputs/o", "sha256": "aa" * 32}]}
BAD = {"outputs": [{"path": "/outputs/o", "sha256": "bb" * 32}]}
PARAMS = CaseParams(VerificationParams(auditor_min_clean_jobs=0, auditor_min_reputation=0.0,
                                       tiebreakers=1, audit_window=600), force_rate_bps=10_000)
NODES = [Candidate(f"n{i}", clean_jobs=500, reputation=0.9, stake=10) for i in range(6)]


def view(runs: Mapping[str, RunStatus] | None = None, result: Mapping[str, Any] = GOOD,
         pool: list[Candidate] | None = None) -> CaseView:
    nodes = NODES if pool is None else pool
    return CaseView(result=result, finished_at=0, beacon=BEACON, runs=runs or {},
                    pool=lambda: nodes)


def posted(cmds: tuple[Command, ...]) -> list[PostRun]:
    return [c for c in cmds if isinstance(c, PostRun)]


def test_an_illegal_step_is_a_typed_error() -> None:
    case = VerificationCase("j", "n0", "deterministic")
    with pytest.raises(IllegalTransition):
        _move(case, "judge", CaseStatus.NODE_WRONG)
    with pytest.raises(IllegalTransition):
        _move(replace(case, status=CaseStatus.PASSED), "release", CaseStatus.RELEASED)


def test_a_sampled_audit_that_agrees_releases_the_pay_and_pays_the_auditor() -> None:
    case = VerificationCase("j", "n0", "deterministic")
    step = advance(case, view(), 0, PARAMS)
    [run] = posted(step.commands)
    assert step.case.status is CaseStatus.AUDITING and run.run.node != "n0"
    assert run.run.job_id == run_id("j", run.run.role, 0, 0)
    done = {run.run.job_id: RunStatus(done=True, succeeded=True, result=GOOD)}
    step = advance(step.case, view(done), 5, PARAMS)
    assert step.case.status is CaseStatus.PASSED and step.case.auditor == run.run.node
    assert step.commands[:3] == (Release(passed=True), PayRunners((run.run.node,)),
                                 RecordAudit("n0", passed=True))


def test_a_liar_is_outvoted_by_the_panel() -> None:
    case = VerificationCase("j", "n0", "deterministic")
    step = advance(case, view(result=BAD), 0, PARAMS)
    [audit] = posted(step.commands)
    runs = {audit.run.job_id: RunStatus(done=True, succeeded=True, result=GOOD)}
    step = advance(step.case, view(runs, result=BAD), 5, PARAMS)
    assert isinstance(step.commands[0], OpenDispute)
    [tiebreak] = posted(step.commands)
    assert tiebreak.run.node not in ("n0", audit.run.node)
    runs[tiebreak.run.job_id] = RunStatus(done=True, succeeded=True, result=GOOD)
    step = advance(step.case, view(runs, result=BAD), 9, PARAMS)
    assert step.case.status is CaseStatus.NODE_WRONG and step.case.slashed == ("n0",)
    kinds = [type(c) for c in step.commands]
    assert kinds.index(RecordVerdict) < kinds.index(SettleDispute)
    assert RecordAudit("n0", passed=False) in step.commands


def test_a_run_that_left_its_node_is_retired_and_retried_elsewhere() -> None:
    case = VerificationCase("j", "n0", "deterministic")
    step = advance(case, view(), 0, PARAMS)
    [first] = posted(step.commands)
    runs = {first.run.job_id: RunStatus(done=False, left_node=True)}
    step = advance(step.case, view(runs), 5, PARAMS)
    assert step.commands[0] == RetireRun(first.run.job_id)
    [retry] = posted(step.commands)
    assert retry.run.slot == 0 and retry.run.job_id == run_id("j", retry.run.role, 0, 1)


def test_nobody_to_audit_until_the_window_closes_releases_unaudited() -> None:
    case = VerificationCase("j", "n0", "deterministic")
    step = advance(case, view(pool=[]), 0, PARAMS)
    assert step.case.status is CaseStatus.AUDITING and not step.commands
    step = advance(step.case, view(pool=[]), 600, PARAMS)
    assert step.commands == (Release(passed=False),)
    assert step.case.reason == "no auditor could run the job"


def test_client_paid_replicas_are_settled_by_the_verdict() -> None:
    case = VerificationCase("j", "n0", "deterministic", replicas=3)
    step = advance(case, view(), 0, replace(PARAMS, force_rate_bps=0))
    runs = posted(step.commands)
    assert step.case.rate_bps == 10_000 and len(runs) == 2
    assert {r.run.paid_by for r in runs} == {"client"}
    held = {r.run.job_id: RunStatus(done=True, succeeded=True, held=True, result=GOOD)
            for r in runs}
    step = advance(step.case, view(held), 5, PARAMS)
    assert step.case.status is CaseStatus.PASSED
    assert [c for c in step.commands if isinstance(c, SettleReplica)] == [
        SettleReplica(r.run.job_id, agrees=True) for r in runs]
    assert not [c for c in step.commands if isinstance(c, PayRunners)]  # the client paid


# --------------------------------------------------------------------- an invariant


ENDINGS = st.sampled_from(["good", "bad", "failed", "left", "open"])


@settings(max_examples=300, deadline=None)
@given(node_lies=st.booleans(), replicas=st.sampled_from([1, 2, 3]),
       endings=st.lists(ENDINGS, min_size=40, max_size=40))
def test_the_held_pay_is_paid_out_exactly_once(node_lies: bool, replicas: int,
                                               endings: list[str]) -> None:
    """Whatever the runs do, a case closes by the end of its window and its job is paid
    out exactly once (a release or a dispute settlement), never before it closes."""
    case = VerificationCase("j", "n0", "deterministic", replicas=replicas)
    result = BAD if node_lies else GOOD
    statuses: dict[str, RunStatus] = {}
    payouts, ending, now = 0, iter(endings), 0
    while case.status not in CLOSED:
        assert now <= 2 * PARAMS.rules.audit_window, "the case never closed"
        step = advance(case, view(statuses, result=result), now, PARAMS)
        payouts += sum(isinstance(c, Release | SettleDispute) for c in step.commands)
        assert payouts == (1 if step.case.status in CLOSED else 0)
        for c in step.commands:
            if isinstance(c, PostRun):
                statuses[c.run.job_id] = RunStatus(done=False)
        for job_id, s in list(statuses.items()):
            if s.done:
                continue
            e = next(ending, "good")
            client = replicas > 1
            statuses[job_id] = {
                "good": RunStatus(done=True, succeeded=True, held=client, result=GOOD),
                "bad": RunStatus(done=True, succeeded=True, held=client, result=BAD),
                "failed": RunStatus(done=True),
                "left": RunStatus(done=False, left_node=True),
                "open": s,
            }[e]
        case, now = step.case, now + 50
    assert payouts == 1
