"""One op of a job run: the state its siblings see, its literals, waiting for its container.

The events on :class:`OpRun` are how ops of a job coordinate: ``released`` lets dependents
start (startup success or end), ``ended`` triggers ``stop_if_dependent_stops``, and
``stop_requested`` is set for every op once one op fails (fail fast).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from nosgrid.core.jobs.literals import LiteralContext, resolve_op_args
from nosgrid.core.jobs.results import ResultValue, extract_results
from nosgrid.core.jobs.spec import CreateVolumeOperation, RunArgs, RunOperation
from nosgrid.node.executor import ContainerResult, PodmanContainer, PodmanRuntime
from nosgrid.node.runner.outcome import OpOutcome


class OpRun:
    """One op of a running job: its logs so far, endpoints, outcome and coordination events."""

    def __init__(self, index: int, op: RunOperation | CreateVolumeOperation, host: str) -> None:
        self.index = index
        self.op = op
        self.host = host
        self.logs: list[tuple[str, str]] = []
        self.released = asyncio.Event()  # startup success or end: dependents may start
        self.ended = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.endpoints: dict[str, str] = {}
        self.outcome = OpOutcome(op.id)

    def live_results(self) -> dict[str, ResultValue]:
        return extract_results(self.op.results or {}, self.logs) if self.op.results else {}


def resolve_args(op: RunOperation, ops: list[OpRun], ctx_base: dict[str, Any]) -> RunArgs:
    """``op``'s args with every literal resolved against the job's ops as they are now."""
    ops_ctx: dict[str, dict[str, Any]] = {}
    for other in ops:
        state: dict[str, Any] = {"host": other.host}
        if other.op.results and other.logs:
            state["results"] = other.live_results()
        if other.endpoints:
            state["endpoint"] = dict(other.endpoints)
        ops_ctx[other.op.id] = state
    ctx = LiteralContext(ops=ops_ctx, **ctx_base)
    raw = op.args.model_dump(by_alias=True, exclude_none=True, mode="json")
    return RunArgs.model_validate(resolve_op_args(raw, ctx))


async def wait_or_stop(
    runtime: PodmanRuntime,
    run: OpRun,
    handle: PodmanContainer,
    deps: list[OpRun],
    *,
    grace_s: float,
    note: Callable[[str], None],
) -> ContainerResult:
    """Wait for the container; stop it first if ``run`` is asked to stop or a dep ends.

    ``note`` gets the ``nodeerr`` line saying which dependency's end stopped it.
    """
    wait = asyncio.ensure_future(runtime.wait(handle))
    stop_reasons = [asyncio.ensure_future(run.stop_requested.wait())]
    stop_reasons += [asyncio.ensure_future(d.ended.wait()) for d in deps]
    try:
        await asyncio.wait([wait, *stop_reasons], return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        wait.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await wait
        raise
    finally:
        for fut in stop_reasons:
            fut.cancel()
    if wait.done():
        return wait.result()
    ended = [d.op.id for d in deps if d.ended.is_set()]
    if ended:
        note(f"stopping: dependency {ended[0]!r} ended (stop_if_dependent_stops)")
    try:  # a stop sent before podman created the container is lost: then force it
        result = await asyncio.wait_for(runtime.stop(handle, grace_s=grace_s), grace_s + 5.0)
    except TimeoutError:
        result = await runtime.wait(handle)
    with contextlib.suppress(BaseException):
        await wait
    return result


async def wait_first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
