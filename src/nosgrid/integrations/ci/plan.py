"""From a validated workflow to the nosgrid jobs to post: checks, order, markets, instances.

Everything a bad file can get wrong is found here, before a byte is uploaded: an
unsupported action (naming the step and the action), a ``needs`` on a missing job or in a
cycle, an expression that does not parse, a static matrix past the limit. Pure: contexts
(``github`` from the checkout, secrets) are handed in.

``runs-on`` → market (documented in docs/ci.md): a label ``nosgrid-<market>`` (or
``nosgrid: <market>`` in a mapping) picks that market; any other label, a list without
such a label, or an expression uses the default market (``--market``, else the
coordinator's choice).

>>> market_for("nosgrid-gpu", None).market
'gpu'
>>> market_for("ubuntu-latest", "cpu").why
"runs-on 'ubuntu-latest' is not a nosgrid-<market> label: the default market"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from nosgrid.integrations.ci import expressions as ex
from nosgrid.integrations.ci.errors import InvalidWorkflow
from nosgrid.integrations.ci.matrix import MAX_MATRIX_JOBS, MatrixError, expand, label
from nosgrid.integrations.ci.model import DEFAULT_TIMEOUT_MINUTES, Job, Step, Workflow
from nosgrid.integrations.ci.source import Source

DEFAULT_IMAGE: Final = "localhost/nosgrid-ci:test"
MARKET_LABEL_PREFIX: Final = "nosgrid-"
#: the ``runs-on`` label that asks for egress (the job's network: only the node's proxy)
EGRESS_LABEL: Final = "nosgrid-egress"
#: actions nosgrid maps to its own steps (any ref: ``@v4``, a sha …)
SUPPORTED_ACTIONS: Final = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/cache": "cache",
}
#: actions that only report to a third-party service: skipped (and said so), not an error
SKIPPED_ACTIONS: Final = (
    "codecov/codecov-action",
    "coverallsapp/github-action",
    "codacy/codacy-coverage-reporter-action",
    "paambaati/codeclimate-action",
    "actions/upload-pages-artifact",
)
SHELLS: Final = ("bash", "sh", "python")


@dataclass(frozen=True)
class MarketChoice:
    market: str | None
    why: str


def market_for(runs_on: Any, default: str | None) -> MarketChoice:
    """The market a job's ``runs-on`` maps to (see the module docstring)."""
    labels: list[str] = []
    if isinstance(runs_on, str):
        labels = [runs_on]
    elif isinstance(runs_on, list):
        labels = [x for x in runs_on if isinstance(x, str)]
    elif isinstance(runs_on, Mapping):
        if isinstance(runs_on.get("nosgrid"), str):
            return MarketChoice(runs_on["nosgrid"], "runs-on names it (nosgrid:)")
        raw = runs_on.get("labels")
        labels = [raw] if isinstance(raw, str) else [x for x in raw or [] if isinstance(x, str)]
    for name in labels:
        if name.startswith(MARKET_LABEL_PREFIX) and len(name) > len(MARKET_LABEL_PREFIX) \
                and not ex.has_expression(name) and name != EGRESS_LABEL:
            return MarketChoice(name[len(MARKET_LABEL_PREFIX):], f"runs-on label {name!r}")
    shown = runs_on if isinstance(runs_on, str) else "a list" if isinstance(runs_on, list) \
        else "an expression" if runs_on is None else "a mapping"
    return MarketChoice(default, f"runs-on {shown!r} is not a nosgrid-<market> label: "
                                 "the default market")


def wants_egress(runs_on: Any) -> bool:
    """Whether ``runs-on`` holds the ``nosgrid-egress`` label (a string, a list, ``labels:``).

    >>> wants_egress(["nosgrid-cpu", "nosgrid-egress"]), wants_egress("ubuntu-latest")
    (True, False)
    """
    if isinstance(runs_on, str):
        return runs_on == EGRESS_LABEL
    if isinstance(runs_on, list):
        return EGRESS_LABEL in runs_on
    if isinstance(runs_on, Mapping):
        return wants_egress(runs_on.get("labels"))
    return False


def action_name(uses: str) -> str:
    """``actions/checkout@v4`` → ``actions/checkout`` (lower case)."""
    return uses.split("@", 1)[0].strip().lower().rstrip("/")


def action_kind(uses: str) -> str | None:
    """``checkout``, ``setup-python`` … ``skip``, or None when nosgrid cannot run it."""
    name = action_name(uses)
    if name in SUPPORTED_ACTIONS:
        return SUPPORTED_ACTIONS[name]
    if name in SKIPPED_ACTIONS or any(name.startswith(s + "/") for s in SKIPPED_ACTIONS):
        return "skip"
    return None


def step_title(step: Step, index: int) -> str:
    """A step's name as GitHub shows it: ``name``, ``Run <first line>`` or ``Run <action>``."""
    if step.name:
        return step.name
    if step.uses:
        return f"Run {step.uses}"
    first = (step.run or "").strip().splitlines()
    return f"Run {first[0][:60]}" if first else f"step {index + 1}"


# --- checks ------------------------------------------------------------------------------


def check_workflow(wf: Workflow, src: Source, *, matrix_limit: int = MAX_MATRIX_JOBS) -> list[str]:
    """Every problem that would stop the run, as ``InvalidWorkflow``; returns warnings
    (skipped actions) when there is none."""
    errors: list[str] = []
    warnings: list[str] = []
    for job_id, job in wf.jobs.items():
        base: tuple[str | int, ...] = ("jobs", job_id)
        for need in job.need_list():
            if need not in wf.jobs:
                errors.append(f"{src.where((*base, 'needs'))}: needs {need!r}, which is not a "
                              f"job of this workflow (jobs: {', '.join(wf.jobs)})")
            elif need == job_id:
                errors.append(f"{src.where((*base, 'needs'))}: a job cannot need itself")
        ids = [s.id for s in job.steps if s.id]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            errors.append(f"{src.where((*base, 'steps'))}: step id {dup!r} is used twice")
        for i, step in enumerate(job.steps):
            where = src.where((*base, "steps", i, "uses" if step.uses else "run"))
            if step.uses is not None:
                kind = action_kind(step.uses)
                if kind is None:
                    errors.append(
                        f"{where}: step {step_title(step, i)!r} uses {step.uses!r}, which "
                        "nosgrid ci cannot run; supported: " + ", ".join(SUPPORTED_ACTIONS)
                        + "; skipped (reported): " + ", ".join(SKIPPED_ACTIONS))
                elif kind == "skip":
                    warnings.append(f"{where}: {step.uses} is skipped (it reports to a "
                                    "third-party service)")
                elif kind == "cache" and not (step.with_ or {}).get("key"):
                    errors.append(f"{where}: actions/cache needs 'with: key'")
            shell = step.shell
            if shell is not None and shell not in SHELLS and "{0}" not in shell:
                errors.append(f"{src.where((*base, 'steps', i, 'shell'))}: shell {shell!r} is "
                              f"not supported; use {', '.join(SHELLS)} or a command with {{0}}")
        errors += _expression_problems(src)
        if job.strategy is not None and isinstance(job.strategy.matrix, dict) and \
                not _dynamic(job.strategy.matrix):
            try:
                expand(job.strategy.matrix, limit=matrix_limit)
            except MatrixError as exc:
                errors.append(f"{src.where((*base, 'strategy', 'matrix'))}: {exc}")
    errors += _cycle_problems(wf, src)
    if errors:
        raise InvalidWorkflow(errors=list(dict.fromkeys(errors)))
    return warnings


def _dynamic(value: Any) -> bool:
    if isinstance(value, str):
        return ex.has_expression(value)
    if isinstance(value, list):
        return any(_dynamic(v) for v in value)
    if isinstance(value, Mapping):
        return any(_dynamic(v) for v in value.values())
    return False


def _expression_problems(src: Source) -> list[str]:
    out: list[str] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif isinstance(value, str):
            try:
                if path and path[-1] == "if":
                    ex.parse(ex.condition_expression(value))
                for _, _, expr in ex.expressions_in(value):
                    ex.parse(expr)
            except ex.ExpressionError as exc:
                out.append(f"{src.where(path)}: {exc}")

    walk(src.data, ())
    return out


def _cycle_problems(wf: Workflow, src: Source) -> list[str]:
    graph = {j: [n for n in job.need_list() if n in wf.jobs] for j, job in wf.jobs.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                loop = [*stack[stack.index(nxt):], nxt]
                cycles.append(f"{src.where(('jobs', node, 'needs'))}: the needs form a "
                              f"cycle: {' -> '.join(loop)}")
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for job_id in graph:
        if job_id not in state:
            visit(job_id)
    return cycles


def job_levels(wf: Workflow) -> list[list[str]]:
    """The jobs in the order they can start: each level needs only earlier levels.

    >>> from nosgrid.integrations.ci.model import Workflow
    >>> wf = Workflow.model_validate({"jobs": {
    ...     "b": {"needs": "a", "steps": [{"run": "x"}]}, "a": {"steps": [{"run": "x"}]}}})
    >>> job_levels(wf)
    [['a'], ['b']]
    """
    done: set[str] = set()
    levels: list[list[str]] = []
    left = list(wf.jobs)
    while left:
        ready = [j for j in left if all(n in done for n in wf.jobs[j].need_list())]
        if not ready:
            raise InvalidWorkflow(errors=[f"the needs form a cycle among {', '.join(left)}"])
        levels.append(ready)
        done.update(ready)
        left = [j for j in left if j not in done]
    return levels


# --- instances -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobInstance:
    """One nosgrid job to post: a workflow job with one matrix combination, resolved."""

    key: str
    job_id: str
    title: str
    matrix: dict[str, Any]
    image: str
    market: str | None
    market_why: str
    timeout_minutes: float
    continue_on_error: bool
    env: dict[str, str]
    container_env: dict[str, str]
    warnings: tuple[str, ...] = ()
    #: ``runs-on`` carries ``nosgrid-egress``: out through the node's filtering proxy
    egress: bool = False
    #: the ``strategy`` context (fail-fast, job-index, job-total, max-parallel)
    strategy: dict[str, Any] = field(default_factory=dict)

    @property
    def timeout_s(self) -> int:
        return max(1, math.ceil(self.timeout_minutes * 60))


@dataclass(frozen=True)
class Strategy:
    fail_fast: bool
    max_parallel: int | None
    dynamic: bool = False


@dataclass
class JobContexts:
    """What job-level expressions may read (GitHub: github, needs, vars, inputs; then
    matrix and strategy; secrets in ``env``)."""

    github: dict[str, Any]
    needs: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    workflow_env: dict[str, str] = field(default_factory=dict)

    def evaluator(self, **extra: Any) -> ex.Evaluator:
        contexts = {"github": self.github, "needs": self.needs, "vars": {}, "inputs": {},
                    "runner": runner_context(), "env": self.workflow_env, **extra}
        return ex.Evaluator(contexts)


def runner_context() -> dict[str, str]:
    return {"os": "Linux", "arch": "X64", "name": "nosgrid", "temp": "/work/_temp",
            "tool_cache": "/work/_tool", "environment": "self-hosted"}


def workflow_env(wf: Workflow, github: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The workflow's ``env`` evaluated (it may read github, secrets, vars, inputs)."""
    ev = ex.Evaluator({"github": github, "secrets": secrets, "vars": {}, "inputs": {}})
    return {k: ex.stringify(ev.value(v)) for k, v in (wf.env or {}).items()}


def strategy_of(job: Job, ctx: JobContexts) -> Strategy:
    st = job.strategy
    if st is None:
        return Strategy(fail_fast=True, max_parallel=None)
    ev = ctx.evaluator()
    fail_fast = True if st.fail_fast is None else ex.truthy(ev.value(st.fail_fast))
    max_parallel = None if st.max_parallel is None else int(ex.stringify(ev.value(st.max_parallel))
                                                            or 0) or None
    return Strategy(fail_fast, max_parallel, dynamic=_dynamic(st.matrix))


def matrix_of(job: Job, ctx: JobContexts, *, limit: int = MAX_MATRIX_JOBS) -> list[dict[str, Any]]:
    """The job's matrix combinations, with expressions (``fromJSON(needs.x.outputs.m)``)
    evaluated against ``ctx``."""
    if job.strategy is None or job.strategy.matrix is None:
        return [{}]
    value = ctx.evaluator().value(job.strategy.matrix)
    if not isinstance(value, Mapping):
        raise MatrixError("strategy.matrix must be a mapping (or an expression giving one)")
    return expand(value, limit=limit)


def instances(
    job_id: str,
    job: Job,
    ctx: JobContexts,
    *,
    default_market: str | None,
    limit: int = MAX_MATRIX_JOBS,
) -> list[JobInstance]:
    """The nosgrid jobs of one workflow job (one per matrix combination)."""
    combos = matrix_of(job, ctx, limit=limit)
    strategy = strategy_of(job, ctx)
    out: list[JobInstance] = []
    for combo in combos:
        strategy_ctx = {"fail-fast": strategy.fail_fast, "job-index": len(out),
                        "job-total": len(combos),
                        "max-parallel": strategy.max_parallel or len(combos)}
        ev = ctx.evaluator(matrix=combo, strategy=strategy_ctx, secrets=ctx.secrets)
        runs_on = job.runs_on
        if isinstance(runs_on, str) and ex.has_expression(runs_on):
            runs_on = ex.stringify(ev.value(runs_on))
        choice = market_for(runs_on, default_market)
        egress = wants_egress(runs_on)
        image, container_env = DEFAULT_IMAGE, {}
        if isinstance(job.container, str):
            image = ex.stringify(ev.value(job.container)) or DEFAULT_IMAGE
        elif job.container is not None:
            image = ex.stringify(ev.value(job.container.image)) or DEFAULT_IMAGE
            container_env = {k: ex.stringify(ev.value(v))
                             for k, v in (job.container.env or {}).items()}
        minutes: float = DEFAULT_TIMEOUT_MINUTES
        if job.timeout_minutes is not None:
            raw = ev.value(job.timeout_minutes)
            try:
                minutes = float(raw)
            except (TypeError, ValueError) as exc:
                raise MatrixError(f"jobs.{job_id}.timeout-minutes is {raw!r}, not a number") \
                    from exc
            if not minutes > 0:
                raise MatrixError(f"jobs.{job_id}.timeout-minutes must be above 0")
        coe = False if job.continue_on_error is None else ex.truthy(ev.value(job.continue_on_error))
        env = {**ctx.workflow_env, **{k: ex.stringify(ev.value(v))
                                      for k, v in (job.env or {}).items()}}
        title = (job.name and ex.stringify(ev.value(job.name))) or job_id
        suffix = label(combo)
        if suffix and not (job.name and ex.has_expression(job.name)):
            title = f"{title} {suffix}"
        key = job_id if len(combos) == 1 and not combo else f"{job_id}-{len(out) + 1}"
        out.append(JobInstance(key=key, job_id=job_id, title=title, matrix=combo, image=image,
                               market=choice.market, market_why=choice.why,
                               timeout_minutes=minutes, continue_on_error=coe, env=env,
                               container_env=container_env, warnings=tuple(ev.warnings),
                               egress=egress, strategy=strategy_ctx))
    return out


def clamp_timeout(requested_s: int, market_max_s: int | None) -> tuple[int, str]:
    """The job's timeout after the market's maximum, and a note when it was cut.

    >>> clamp_timeout(21600, 3600)
    (3600, "timeout-minutes 360 is above the market's maximum of 60 min: clamped")
    """
    if market_max_s is None or requested_s <= market_max_s:
        return requested_s, ""
    return market_max_s, (f"timeout-minutes {requested_s / 60:g} is above the market's "
                          f"maximum of {market_max_s / 60:g} min: clamped")
