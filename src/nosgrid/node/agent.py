"""The node agent: register, heartbeat, long-poll, run, report; recover after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from solders.keypair import Keypair

from nosgrid.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidJobSpec,
    NodeNotFound,
    NosgridError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ReplayedNonce,
    Unavailable,
)
from nosgrid.core.jobs.load import load_job_definition
from nosgrid.core.jobs.plan import volume_name
from nosgrid.core.jobs.spec import CreateVolumeOperation
from nosgrid.core.jobs.state import JobState
from nosgrid.core.markets import HardwareReport
from nosgrid.node.benchmark import run_benchmark
from nosgrid.node.egress import EgressPolicy, policy_from_env
from nosgrid.node.executor import PodmanRuntime
from nosgrid.node.hardware import probe_hardware
from nosgrid.node.resources import HFCache
from nosgrid.node.runner import JobOutcome, JobRunner, RunnerLimits, flow_id, pod_name
from nosgrid.node.runner.plan import FLOW_LABEL
from nosgrid.node.state import AgentState, InFlightJob, StateFile
from nosgrid.sdk.client import AsyncClient
from nosgrid.sdk.models import JobView, PollView, RegistrationView

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MODEL_CACHE_BYTES = 20 * 1024**3
LOG_FLUSH_S = 0.2
LOG_FLUSH_BYTES = 64 * 1024
RESTART_REASON = "node restarted mid-job"
SHUTDOWN_REASON = "node shut down before the job ended; handed back"


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 10.0,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ``min(cap, base·2^attempt)`` × U(0.5, 1).

    >>> 0.1 <= backoff_delay(0, rng=random.Random(1)) <= 0.2
    True
    """
    r = rng or random.Random()
    return float(min(cap, base * 2**attempt) * r.uniform(0.5, 1.0))


def is_transient(err: NosgridError) -> bool:
    """Worth asking again: the coordinator is unreachable, overloaded or failed inside (any
    5xx, a proxy's page included), or it rate-limited us, or a nonce collided.

    Everything else (4xx) is its considered answer about this one request: asking again
    changes nothing.

    >>> is_transient(Unavailable()), is_transient(NosgridError("HTTP 502"))
    (True, True)
    >>> is_transient(Conflict("cannot complete job j: it is settled"))
    False
    """
    return isinstance(err, (Unavailable, RateLimited, ReplayedNonce)) or err.http_status >= 500


def not_ours_any_more(err: NosgridError) -> bool:
    """The coordinator's answer to a report about a job that is no longer this node's:
    settled or cancelled (409), given to another node (403), unknown (404)."""
    return isinstance(err, (Conflict, Forbidden, NotFound))


class _LogPusher:
    """Batches log lines and pushes them every 200 ms or 64 KiB, whichever comes first."""

    def __init__(self, client: AsyncClient, job_id: str, *, prefix_ops: bool) -> None:
        self.client = client
        self.job_id = job_id
        self.prefix_ops = prefix_ops
        self._chunks: list[dict[str, Any]] = []
        self._bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, op_id: str, stream: str, line: str) -> None:
        text = f"[{op_id}] {line}" if (self.prefix_ops and op_id) else line
        self._chunks.append({"stream": stream, "data": text + "\n", "at": time.time()})
        self._bytes += len(text) + 1
        if self._bytes >= LOG_FLUSH_BYTES:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), LOG_FLUSH_S)
            self._wake.clear()
            if self._closing:
                return
            await self.flush()

    async def flush(self) -> None:
        while self._chunks:
            batch, self._chunks = self._chunks[:500], self._chunks[500:]
            self._bytes = sum(len(c["data"]) for c in self._chunks)
            try:
                await self.client.push_logs(self.job_id, batch)
            except NosgridError as exc:
                log.warning("log push failed", extra={"job": self.job_id, "err": str(exc)})
                return

    async def close(self) -> None:
        await self.stop()
        await self.flush()

    async def stop(self) -> None:
        """Stop the background pushes (a push in flight completes; nothing is lost)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def tail(self, keep: int = 500) -> list[dict[str, Any]]:
        """After :meth:`stop`: push all but the last ``keep`` chunks, return those."""
        while len(self._chunks) > keep:
            batch, self._chunks = self._chunks[:500], self._chunks[500:]
            try:
                await self.client.push_logs(self.job_id, batch)
            except NosgridError as exc:
                log.warning("log push failed", extra={"job": self.job_id, "err": str(exc)})
        chunks, self._chunks, self._bytes = self._chunks, [], 0
        return chunks


class Agent:
    """One provider node: registers, heartbeats, takes jobs one at a time and reports them.

    ``stop`` (an ``asyncio.Event``, set by the CLI's SIGTERM handler) asks for a graceful
    stop: a running job gets ``grace_s`` to end, then its containers are stopped and it is
    failed with fault ``node`` so the client is refunded. ``lying`` (tests of verification
    only) uploads garbage instead of the real output files.

    Example::

        agent = Agent(AsyncClient(url, keypair), PodmanRuntime(state_dir / "executor"),
                      state_dir, ["cpu"])
        task = asyncio.create_task(agent.run())
        ...
        agent.stop.set(); await task
    """

    def __init__(
        self,
        client: AsyncClient,
        runtime: PodmanRuntime,
        state_dir: Path,
        markets: Sequence[str],
        *,
        heartbeat_s: float = 10.0,
        lying: bool = False,
        poll_wait_s: float = 25.0,
        grace_s: float = 30.0,
        cancel_check_s: float = 2.0,
        limits: RunnerLimits | None = None,
        benchmark: bool = True,
        stop: asyncio.Event | None = None,
        model_cache_bytes: int = DEFAULT_MODEL_CACHE_BYTES,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.state_dir = state_dir
        self.markets = list(markets)
        self.heartbeat_s = heartbeat_s
        self.lying = lying
        self.poll_wait_s = poll_wait_s
        self.grace_s = grace_s
        self.cancel_check_s = cancel_check_s
        self.limits = limits or RunnerLimits()
        self.benchmark = benchmark
        self.stop = stop or asyncio.Event()
        self.state = StateFile(state_dir)
        self.node_id: str | None = None
        self.jobs_done = 0
        self.hardware: HardwareReport | None = None
        #: the markets the coordinator says this node serves (they follow new markets)
        self.serving: list[str] = []
        self._reports: set[asyncio.Task[Any]] = set()
        #: models (HF resources) shared by this node's jobs, LRU-bounded
        self.hf_cache = HFCache(state_dir / "models", model_cache_bytes)
        #: egress for jobs that ask for it (NOSGRID_EGRESS, NOSGRID_EGRESS_ALLOW)
        self.egress: EgressPolicy = policy_from_env()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Register, recover, then take work until ``stop`` is set."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.register()
        if self.stop.is_set():
            return
        await self.recover()
        beat = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._work_loop()
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        log.info("agent stopped", extra={"node": self.node_id, "jobs": self.jobs_done})

    async def register(self) -> RegistrationView | None:
        """Probe and benchmark this machine, then register (retrying while unreachable).

        A refusal that asking again cannot change (a bad signature: the keypair or the
        clock; a report the coordinator rejects) is the one error that stops the agent.
        """
        if self.hardware is None:
            score = (await asyncio.to_thread(run_benchmark, 1.0)).cpu_score if self.benchmark \
                else 0.0
            probe = await asyncio.to_thread(probe_hardware, self.state_dir, cpu_score=score)
            self.hardware = probe.report
        hw = self.hardware.model_dump(mode="json")
        try:
            reg = await self._retry(lambda: self.client.register_node(hw, self.markets))
        except NosgridError as exc:
            log.error("the coordinator refuses to register this node, so it cannot work; "
                      "check its keypair, its clock and the coordinator URL",
                      extra={"err": str(exc), "code": exc.code})
            raise
        if reg is None:
            return None
        self.node_id = reg.node_id
        self.serving = list(reg.markets)
        log.info("node registered", extra={"node": self.node_id, "markets": reg.markets,
                                           "rejected": reg.rejected})
        return reg

    async def recover(self) -> None:
        """Report a job left in flight by a previous run of this agent and remove its leftovers."""
        saved = self.state.load()
        job = saved.in_flight
        if job is None:
            return
        log.warning("reporting the job in flight before the restart", extra={"job": job.job_id})
        await self._remove_leftovers(job)
        await self._tell(job.job_id, "fail", lambda: self.client.fail_job(
            job.job_id, reason=RESTART_REASON, fault="node",
            seconds_used=max(0, int(time.time() - job.started_at))))
        self.state.save(AgentState(node_id=self.node_id))

    async def _remove_leftovers(self, job: InFlightJob) -> None:
        # only this run's flow: another node on the same host may run the requeued job now
        flow = flow_id(job.job_id, job.attempt)
        names = set(job.containers)
        with contextlib.suppress(NosgridError):
            names |= set(await self.runtime.list_containers(label=f"{FLOW_LABEL}={flow}"))
        for name in sorted(names):
            await self.runtime.remove(name)
        await self.runtime.remove_pod(job.pod or pod_name(flow))
        for volume in job.volumes:
            await self.runtime.remove_volume(volume)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                beat = await self.client.heartbeat()
            except (NodeNotFound, NotFound):
                log.warning("coordinator forgot this node; registering again")
                with contextlib.suppress(NosgridError):
                    await self.register()
            except NosgridError as exc:
                log.warning("heartbeat failed", extra={"err": str(exc)})
            else:
                if beat.markets != self.serving:
                    log.info("node now serves other markets",
                             extra={"node": self.node_id, "markets": beat.markets,
                                    "before": self.serving})
                    self.serving = list(beat.markets)

    async def _work_loop(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            poll = asyncio.ensure_future(self.client.poll(wait=self.poll_wait_s))
            stopping = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait([poll, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not poll.done():
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError, NosgridError):
                    await poll
                if not poll.cancelled() and poll.exception() is None:
                    await self._hand_back_unstarted(poll.result())
                return
            try:
                answer = poll.result()
            except (NodeNotFound, NotFound):
                await self.register()
                continue
            except Unavailable as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("coordinator unavailable; retrying",
                            extra={"err": str(exc), "delay_s": round(delay, 2)})
                await self._sleep_or_stop(delay)
                continue
            except NosgridError as exc:
                log.error("poll failed", extra={"err": str(exc)})
                await self._sleep_or_stop(backoff_delay(attempt))
                attempt += 1
                continue
            attempt = 0
            if answer.job is None:
                continue
            if self.stop.is_set():
                await self._hand_back_unstarted(answer)
                return
            await self.handle_job(answer.job, answer.spec or "")

    async def _hand_back_unstarted(self, answer: PollView) -> None:
        if answer.job is not None:
            with contextlib.suppress(NosgridError):
                await self.client.fail_job(answer.job.id, reason=SHUTDOWN_REASON, fault="node")

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _retry(self, call: Callable[[], Awaitable[T]], *, give_up_s: float = 120.0
                     ) -> T | None:
        """``call`` until it raises nothing :func:`is_transient`; None if ``stop`` or time ran
        out. Any other error is the caller's to judge."""
        end = time.monotonic() + give_up_s
        attempt = 0
        while True:
            try:
                return await call()
            except NosgridError as exc:
                if not is_transient(exc):
                    raise
                if (self.stop.is_set() and attempt > 2) or time.monotonic() > end:
                    log.error("coordinator unreachable; giving up", extra={"err": str(exc)})
                    return None
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("coordinator unavailable", extra={"err": str(exc),
                                                              "delay_s": round(delay, 2)})
                await asyncio.sleep(delay)

    async def _tell(self, job_id: str, report: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Send one report about ``job_id``: asked again while the coordinator is unavailable,
        logged and dropped when it refuses it (most often: the job is no longer this
        node's, cancelled or given to another). Never raises for the job."""
        try:
            return await self._retry(call)
        except NosgridError as exc:
            _dropped(job_id, report, exc)
            return None

    # ------------------------------------------------------------------ one job

    async def handle_job(self, view: JobView, spec_text: str) -> None:
        """Run one assigned job end to end and report it (never raises for the job)."""
        job_id = view.id
        timeout_s = float(view.timeout or 600)
        try:
            defn = load_job_definition(spec_text)
        except InvalidJobSpec as exc:
            reason = f"invalid job definition: {exc.message}"[:2000]
            await self._tell(job_id, "fail", lambda: self.client.fail_job(
                job_id, reason=reason, fault="client"))
            return
        started = time.time()
        attempt = view.attempts or 1
        flow = flow_id(job_id, attempt)
        in_flight = InFlightJob(job_id, started, pod=pod_name(flow), attempt=attempt,
                                volumes=tuple(volume_name(flow, op.args.name)
                                              for op in defn.ops
                                              if isinstance(op, CreateVolumeOperation)))
        self.state.save(AgentState(node_id=self.node_id, in_flight=in_flight))
        try:
            began = await self._retry(lambda: self.client.start_job(job_id))
        except NosgridError as exc:
            began, reason = None, str(exc)
        else:
            reason = "the coordinator stayed unreachable"
        if began is None:  # not running on the coordinator: running it would be for nothing
            log.warning("could not start the job", extra={"job": job_id, "err": reason})
            self.state.save(AgentState(node_id=self.node_id))
            return
        log.info("job started", extra={"job": job_id, "timeout_s": timeout_s})
        pusher = _LogPusher(self.client, job_id,
                            prefix_ops=sum(op.type == "container/run" for op in defn.ops) > 1)
        pusher.start()

        def containers_changed(names: list[str]) -> None:
            nonlocal in_flight
            in_flight = dataclasses.replace(in_flight, containers=tuple(names))
            self.state.save(AgentState(node_id=self.node_id, in_flight=in_flight))

        runner = JobRunner(self.runtime, self.state_dir / "jobs", on_log=pusher.add,
                           fetch_blob=self.client.download_blob, limits=self.limits,
                           on_containers=containers_changed, hf_cache=self.hf_cache,
                           on_service=self._service_reporter(job_id),
                           egress=self.egress)
        abort = asyncio.Event()
        cancelled = asyncio.Event()
        watch = asyncio.create_task(self._watch(job_id, abort, cancelled, runner))
        try:
            outcome = await runner.run(job_id, defn, timeout_s=timeout_s, abort=abort,
                                       attempt=attempt)
        except Exception as exc:  # a bug of ours must not strand the job: hand it back
            log.exception("job runner crashed", extra={"job": job_id})
            outcome = JobOutcome("failed", f"the node's runner failed: {exc!r}"[:2000], "node",
                                 exit_code=1)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await pusher.stop()
        try:
            if cancelled.is_set():
                log.info("job cancelled or taken away; not reporting", extra={"job": job_id})
            else:  # the last log lines travel with the report: one request, one transaction
                await self._report(job_id, outcome, await pusher.tail())
        finally:
            runner.discard(job_id, attempt)
            self.state.save(AgentState(node_id=self.node_id))
            self.jobs_done += 1

    def _service_reporter(self, job_id: str) -> Callable[[str, dict[str, str], bool], None]:
        """Tell the coordinator's service registry where a service op answers and whether
        it is healthy (the gateway routes model requests there)."""
        def report(op_id: str, endpoints: dict[str, str], healthy: bool) -> None:
            for port, endpoint in endpoints.items():
                name = op_id if len(endpoints) == 1 else f"{op_id}:{port}"
                task = asyncio.create_task(self._tell(job_id, "service", functools.partial(
                    self.client.report_service, job_id, name, endpoint, healthy)))
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)
        return report

    async def _watch(self, job_id: str, abort: asyncio.Event, cancelled: asyncio.Event,
                     runner: JobRunner | None = None) -> None:
        """Abort the run when the coordinator cancels the job, or after the stop grace
        period; follow the job's timeout when the client extends it."""
        stop_seen: float | None = None
        while True:
            if stop_seen:
                await asyncio.sleep(min(self.cancel_check_s, 0.5))
            else:  # a stop starts the grace period at once, not at the next check
                await self._sleep_or_stop(self.cancel_check_s)
            if self.stop.is_set():
                stop_seen = stop_seen or time.monotonic()
                if time.monotonic() - stop_seen >= self.grace_s:
                    log.warning("grace period over; handing the job back", extra={"job": job_id})
                    abort.set()
                    return
            state: str
            try:
                job = await self.client.job(job_id)
                state, node = job.state, job.node
                if runner is not None and job.timeout:
                    runner.extend_to(float(job.timeout))
            except (Forbidden, NotFound):
                state, node = "gone", None
            except NosgridError:
                continue
            if state not in (JobState.ASSIGNED, JobState.RUNNING) or (
                self.node_id and node not in (None, self.node_id)
            ):
                log.info("job ended on the coordinator", extra={"job": job_id, "state": state})
                cancelled.set()
                abort.set()
                return

    async def _report(self, job_id: str, outcome: JobOutcome,
                      logs: list[dict[str, Any]] | None = None) -> None:
        """Tell the coordinator how the job ended; never raises for the job. A result the
        coordinator refuses (invalid, too large) is reported as the job's failure instead."""
        if outcome.status == "completed":
            try:
                return await self._finish(job_id, outcome, logs)
            except (InvalidInput, PayloadTooLarge) as exc:
                log.warning("the coordinator refused the result; reporting a failure",
                            extra={"job": job_id, "err": str(exc)})
                outcome = dataclasses.replace(
                    outcome, status="failed", fault="client",
                    reason=f"the coordinator refused the job's result: {exc.message}")
            except NosgridError as exc:
                _dropped(job_id, "finish", exc)
                return
        fault = outcome.fault or "client"
        reason = outcome.reason
        if outcome.status == "aborted":
            fault, reason = "node", SHUTDOWN_REASON
        failed = await self._tell(job_id, "fail", lambda: self.client.fail_job(
            job_id, reason=reason[:2000], fault=fault, seconds_used=outcome.seconds_used,
            timed_out=outcome.status == "timed_out", logs=logs))
        if failed is not None:
            log.info("job failed", extra={"job": job_id, "status": outcome.status,
                                          "fault": fault})

    async def _finish(self, job_id: str, outcome: JobOutcome,
                      logs: list[dict[str, Any]] | None) -> None:
        """Upload the outputs and report success (given up on when the coordinator stays
        unreachable: its deadline then ends the job)."""
        outputs = []
        for out in outcome.outputs:
            data = await asyncio.to_thread(out.host_path.read_bytes)
            if self.lying:
                data = os.urandom(max(1, len(data)))
            sha = await self._retry(_bind(self.client.upload_blob, data))
            if sha is None:
                return
            outputs.append({"path": out.path, "sha256": sha, "size": len(data)})
        done = await self._retry(lambda: self.client.finish_job(
            job_id, seconds_used=outcome.seconds_used, exit_code=0, outputs=outputs,
            results=outcome.results, logs=logs))
        if done is not None:
            log.info("job finished", extra={"job": job_id, "outputs": len(outputs)})


def _dropped(job_id: str, report: str, exc: NosgridError) -> None:
    if not_ours_any_more(exc):  # cancelled, settled or given to another node meanwhile
        log.info("job no longer this node's; report dropped",
                 extra={"job": job_id, "report": report, "err": str(exc)})
    else:
        log.error("the coordinator refused a report; dropped",
                  extra={"job": job_id, "report": report, "err": str(exc), "code": exc.code})


def _bind(fn: Callable[[bytes], Awaitable[T]], data: bytes) -> Callable[[], Awaitable[T]]:
    return lambda: fn(data)


async def run_node(
    url: str,
    keypair: Keypair,
    state_dir: Path,
    markets: Sequence[str],
    stop_event: asyncio.Event,
    *,
    heartbeat_s: float = 10.0,
    lying: bool = False,
    grace_s: float = 30.0,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Run one node agent against the coordinator at ``url`` until ``stop_event`` is set.

    The executor keeps its Podman settings under ``state_dir/executor``; jobs' files go
    under ``state_dir/jobs``; ``labels`` go on every container, pod and volume it creates.
    This is what ``nosgrid node start`` and ``nosgrid up`` call.

    Example::

        stop = asyncio.Event()
        await run_node("http://127.0.0.1:8700", load_keypair(), Path("~/.nosgrid/node"),
                       ["cpu"], stop)
    """
    runtime = PodmanRuntime(state_dir / "executor", labels=labels)
    async with AsyncClient(url, keypair) as client:
        agent = Agent(client, runtime, state_dir, markets, heartbeat_s=heartbeat_s,
                      lying=lying, grace_s=grace_s, stop=stop_event)
        await agent.run()
