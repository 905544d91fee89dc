"""Run a whole job definition on Podman as Nosana's node does (groups, depends_on, services)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from nosgrid.core.errors import NosgridError
from nosgrid.core.jobs.literals import TemplateError
from nosgrid.core.jobs.meta import NosgridMeta
from nosgrid.core.jobs.plan import effective_op, execution_groups, volume_name, waits_for
from nosgrid.core.jobs.spec import CreateVolumeOperation, JobDefinition, RunOperation
from nosgrid.node.egress.netns import listen_in_netns
from nosgrid.node.egress.policy import EgressPolicy
from nosgrid.node.egress.proxy import PROXY_PORT, EgressProxy, proxy_env
from nosgrid.node.executor import PodmanContainer, PodmanRuntime
from nosgrid.node.executor.base import ContainerSpecInvalid, PodmanUnavailable
from nosgrid.node.resources import HFCache, ResourceError
from nosgrid.node.runner.files import (
    BlobFetcher,
    fetch_inputs,
    make_output_dirs,
    prepare_resources,
)
from nosgrid.node.runner.health import HealthChecker, free_port
from nosgrid.node.runner.ops import OpRun, resolve_args, wait_first, wait_or_stop
from nosgrid.node.runner.outcome import (
    Fault,
    JobOutcome,
    OpOutcome,
    OutputFile,
    collect_outputs,
)
from nosgrid.node.runner.plan import (
    FLOW_LABEL,
    JOB_LABEL,
    PortPlan,
    RunnerLimits,
    container_spec,
    exposed_ports,
    flow_id,
    op_host,
    pod_name,
    restart_limit,
)

log = logging.getLogger(__name__)

#: ``on_log(op_id, stream, line)``; stream is ``stdout``, ``stderr`` or ``nodeerr``.
JobLogSink = Callable[[str, str, str], None]
#: ``on_service(op_id, {container_port: "http://127.0.0.1:HOST_PORT"}, healthy)``: an op's
#: exposed ports passed their health checks (startup success) or flipped ONLINE/OFFLINE
ServiceSink = Callable[[str, dict[str, str], bool], None]


@dataclass
class _Flow:
    """One assignment of a job on this node: its names, pod, host paths and volumes."""

    job_id: str
    name: str  # the flow id, ``nosgrid-<job>-a<attempt>``
    pod: str | None
    outputs: dict[str, Path]
    inputs: dict[str, Path]
    volumes: list[str]  # created by ``container/create-volume`` ops, removed at the end


class JobRunner:
    """Runs one job definition to its end on a :class:`PodmanRuntime`.

    Example::

        runner = JobRunner(runtime, work_root=Path("/var/lib/nosgrid/jobs"),
                           on_log=lambda op, stream, line: print(op, stream, line))
        outcome = await runner.run("job1", defn, timeout_s=600)
        print(outcome.status, outcome.reason, [o.path for o in outcome.outputs])
    """

    def __init__(
        self,
        runtime: PodmanRuntime,
        work_root: Path,
        *,
        on_log: JobLogSink | None = None,
        fetch_blob: BlobFetcher | None = None,
        limits: RunnerLimits | None = None,
        on_containers: Callable[[list[str]], None] | None = None,
        on_service: ServiceSink | None = None,
        hf_cache: HFCache | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.runtime = runtime
        #: the proxy's rules for jobs with ``network: egress`` (None: such jobs are refused)
        self.egress = egress
        self._proxy: EgressProxy | None = None
        self.work_root = work_root
        self.on_log = on_log
        self.fetch_blob = fetch_blob
        self.limits = limits or RunnerLimits()
        self.on_containers = on_containers
        self.on_service = on_service
        self.hf_cache = hf_cache
        self._pinned: list[Path] = []
        self._ops: list[OpRun] = []
        self._by_id: dict[str, OpRun] = {}
        #: per op index, the dependencies it waits for (its own group's; see waits_for)
        self._waits: dict[int, tuple[str, ...]] = {}
        self._failed = False
        self._containers: list[str] = []
        #: a container of this job really ran (not refused at start): time is billable
        self._billable = False
        self._http: httpx.AsyncClient | None = None
        #: the job's timeout (s) as it stands: ``extend_to`` raises it while it runs
        self._timeout_s = 0.0

    # -------------------------------------------------------------------- entry point

    def extend_to(self, timeout_s: float) -> None:
        """The job's timeout grew (the client extended it): keep running until the new one,
        counted from the same start; the containers are not touched."""
        self._timeout_s = max(self._timeout_s, timeout_s)

    async def run(
        self,
        job_id: str,
        defn: JobDefinition,
        *,
        timeout_s: float,
        abort: asyncio.Event | None = None,
        attempt: int = 1,
    ) -> JobOutcome:
        """Run ``defn`` until it ends, ``timeout_s`` passes (killed, ``timed_out``) or ``abort``.

        ``attempt`` is the job's assignment count: each assignment is its own flow (names,
        labels, files). Never raises for what the job does; cleans up containers, pod,
        volumes and files.
        """
        started = time.monotonic()
        meta = (defn.meta.nosgrid if defn.meta else None) or NosgridMeta()
        flow = flow_id(job_id, attempt)
        in_pod = meta.network in ("job", "egress")
        pod = pod_name(flow) if in_pod else None
        job_dir = self.work_root / flow
        volumes: list[str] = []
        self._ops = [
            OpRun(i, effective_op(defn, i, flow), op_host(flow, i, in_pod=in_pod))
            for i in range(len(defn.ops))
        ]
        self._by_id = {r.op.id: r for r in self._ops}
        self._waits = {i: waits_for(defn, i) for i in range(len(defn.ops))}
        self._http = httpx.AsyncClient(timeout=self.limits.health_timeout_s, trust_env=False)
        outcome: JobOutcome
        # every container of a run that ended by itself has exited and been reaped; only a
        # run cut short (timeout, abort, error) can leave one being created: look twice then
        thorough = True
        try:
            try:
                job_dir.mkdir(parents=True, exist_ok=True)
                job_dir.chmod(0o711)
                outputs = make_output_dirs(job_dir, meta)
                inputs = await fetch_inputs(job_dir, meta, self.fetch_blob)
                if meta.network == "egress" and (self.egress is None or
                                                 not self.egress.enabled):
                    return JobOutcome("failed", "this node does not offer egress "
                                      "(meta.nosgrid.network: egress)", "node", exit_code=1,
                                      seconds_used=0)
                if pod is not None:
                    await self.runtime.create_pod(pod, labels={JOB_LABEL: job_id,
                                                                FLOW_LABEL: flow})
                if pod is not None and meta.network == "egress" and self.egress is not None:
                    self._proxy = await self._start_proxy(pod, self.egress)
            except (NosgridError, OSError) as exc:
                return JobOutcome("failed", f"could not prepare the job: {exc}", "node",
                                  exit_code=1, seconds_used=_secs(started))
            main = asyncio.create_task(
                self._run_groups(defn, _Flow(job_id, flow, pod, outputs, inputs, volumes))
            )
            waiters: set[asyncio.Future[Any]] = {main}
            abort_task = asyncio.create_task(abort.wait()) if abort is not None else None
            if abort_task is not None:
                waiters.add(abort_task)
            self._timeout_s = timeout_s
            while True:  # the client may extend the job while it runs (extend_to)
                remaining = started + self._timeout_s - time.monotonic()
                done, _ = await asyncio.wait(
                    waiters, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED
                )
                if done or time.monotonic() >= started + self._timeout_s:
                    break
            timeout_s = self._timeout_s
            if abort_task is not None:
                abort_task.cancel()
            if main in done:
                outcome = main.result()
                thorough = False
            else:
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main
                if abort is not None and abort.is_set():
                    outcome = JobOutcome("aborted", "stopped by the node", "node", exit_code=1)
                else:
                    outcome = JobOutcome(
                        "timed_out", f"the job ran past its timeout of {timeout_s:g} s; "
                        "its containers were killed", "client", exit_code=124,
                    )
                    self._nodeerr(None, outcome.reason)
            outcome.ops = [r.outcome for r in self._ops]
            if outcome.status == "completed":
                outcome.outputs, outcome.outputs_truncated = await asyncio.to_thread(
                    collect_outputs, outputs, self.limits.output_limit_bytes
                )
            # nothing ran (a resource or image was missing): the client pays for nothing
            outcome.seconds_used = _secs(started) if self._billable else 0
            return outcome
        finally:
            if self._proxy is not None:
                await self._proxy.close()
                self._proxy = None
            await asyncio.shield(self._cleanup(flow, pod, volumes, thorough=thorough))
            self.release_resources()
            await self._http.aclose()

    async def _cleanup(self, flow: str, pod: str | None, volumes: list[str], *,
                       thorough: bool = True) -> None:
        if pod is not None:
            await self.runtime.remove_pod(pod)
        # A container whose `podman run` was cancelled while it was being created can show
        # up a moment after the first removal: look again until two looks find none.
        clean_looks = 0
        for _ in range(10):
            with contextlib.suppress(NosgridError):
                names = await self.runtime.list_containers(label=f"{FLOW_LABEL}={flow}")
                for name in names:
                    await self.runtime.remove(name)
                clean_looks = 0 if names else clean_looks + 1
            if clean_looks >= (2 if thorough else 1):
                break
            await asyncio.sleep(0.3)
        for volume in volumes:
            await self.runtime.remove_volume(volume)

    async def _start_proxy(self, pod: str, policy: EgressPolicy) -> EgressProxy:
        """The egress proxy, listening on the pod's own 127.0.0.1 (its only way out)."""
        pid = await self.runtime.pod_pid(pod)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            sock = await asyncio.to_thread(listen_in_netns, fd, PROXY_PORT)
        finally:
            os.close(fd)
        proxy = EgressProxy(policy)
        await proxy.start(sock)
        return proxy

    def discard(self, job_id: str, attempt: int = 1) -> None:
        """Delete the run's host files (outputs included) once they have been uploaded."""
        shutil.rmtree(self.work_root / flow_id(job_id, attempt), ignore_errors=True)

    # -------------------------------------------------------------------- groups

    async def _run_groups(self, defn: JobDefinition, f: _Flow) -> JobOutcome:
        ctx_base = {
            "job": f.job_id,
            "host": "127.0.0.1",
            "variables": dict((defn.global_.variables or {}) if defn.global_ else {}),
        }
        for group in execution_groups(defn):
            tasks = [
                asyncio.create_task(
                    self._op_task(self._ops[i], f, ctx_base),
                    name=f"op-{self._ops[i].op.id}",
                )
                for i in group.indices
            ]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            if self._failed:
                break
        failed = [r.outcome for r in self._ops if r.outcome.status == "failed"]
        if failed:
            first = failed[0]
            return JobOutcome("failed", f"op {first.op_id!r} failed: {first.reason}",
                              first.fault or "client", exit_code=first.exit_code or 1)
        return JobOutcome("completed")

    def _fail_fast(self) -> None:
        self._failed = True
        for other in self._ops:
            other.stop_requested.set()

    # -------------------------------------------------------------------- one op

    async def _op_task(self, run: OpRun, f: _Flow, ctx_base: dict[str, Any]) -> None:
        try:
            # a dependency in an earlier group has ended: only this group's are waited for
            deps = [self._by_id[d] for d in self._waits.get(run.index, ())]
            if deps:
                await wait_first(*(d.released.wait() for d in deps), run.stop_requested.wait())
            if run.stop_requested.is_set():
                run.outcome.status, run.outcome.reason = "skipped", "the job was stopped first"
                return
            op = run.op
            if isinstance(op, CreateVolumeOperation):
                name = volume_name(f.name, op.args.name)
                try:
                    await self.runtime.create_volume(
                        name, labels={JOB_LABEL: f.job_id, FLOW_LABEL: f.name},
                        options={"o": "uid=1000,gid=1000"},
                    )
                except NosgridError as exc:
                    self._op_failed(run, f"could not create volume {name}: {exc}", "node")
                    return
                f.volumes.append(name)
                run.outcome.status, run.outcome.reason = "finished", f"volume {name} created"
                return
            await self._run_container_op(run, op, f, ctx_base, deps)
        finally:
            run.outcome.results = run.live_results()
            run.released.set()
            run.ended.set()

    async def _run_container_op(
        self,
        run: OpRun,
        op: RunOperation,
        f: _Flow,
        ctx_base: dict[str, Any],
        deps: list[OpRun],
    ) -> None:
        try:
            args = resolve_args(op, self._ops, ctx_base)
        except TemplateError as exc:
            self._op_failed(run, exc.message, "client")
            return
        except ValidationError as exc:
            self._op_failed(run, f"args are not valid after templating: {exc}", "client")
            return
        try:
            resources = await prepare_resources(args, self.hf_cache, self._pinned)
        except ResourceError as exc:  # the client named a model that is not there
            self._op_failed(run, f"resource: {exc.message}", "client")
            return
        except NosgridError as exc:  # the hub is unreachable, the cache is full
            self._op_failed(run, f"resource: {exc.message}", "node")
            return
        port_plans = [PortPlan(p, free_port(), checks) for p, checks in exposed_ports(args)]
        run.endpoints = {str(p.port): f"http://127.0.0.1:{p.host_port}" for p in port_plans}
        spec = container_spec(
            args, flow=f.name, index=run.index, job_id=f.job_id, limits=self.limits, pod=f.pod,
            ports={p.port: p.host_port for p in port_plans}, output_mounts=f.outputs,
            input_mounts={**f.inputs, **resources},
        )
        if self._proxy is not None:  # the job's way out: the node's filtering proxy
            spec = dataclasses.replace(spec, env={**proxy_env(), **spec.env})
        stop_if = bool(op.execution and op.execution.stop_if_dependent_stops)
        restarts = 0

        def on_log(stream: str, line: str) -> None:
            run.logs.append((stream, line))
            if self.on_log is not None:
                self.on_log(run.op.id, stream, line)

        while True:
            try:
                handle = await self.runtime.start(spec, on_log=on_log)
            except ContainerSpecInvalid as exc:
                self._op_failed(run, exc.message, "client")
                return
            except PodmanUnavailable as exc:
                self._op_failed(run, exc.message, "node")
                return
            self._containers.append(handle.name)
            if self.on_containers is not None:
                self.on_containers(list(self._containers))
            health = asyncio.create_task(self._health(run, handle, port_plans))
            try:
                result = await wait_or_stop(
                    self.runtime, run, handle, deps if stop_if else [],
                    grace_s=self.limits.stop_grace_s, note=lambda m: self._nodeerr(run, m),
                )
            finally:
                health.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await health
            if result.status == "stopped":
                run.outcome.status, run.outcome.reason = "stopped", result.reason
                run.outcome.exit_code = result.exit_code
                return
            if result.status != "failed_to_start":
                self._billable = True
            if result.status == "failed_to_start":
                # an image the node does not have is the client's choice, not the node's
                # fault: blaming the node would let clients get honest nodes slashed
                fault: Fault = "client" if "image not known" in result.reason else "node"
                self._op_failed(run, result.reason, fault)
                return
            ok = result.ok
            if restarts < restart_limit(args, exit_ok=ok) and not run.stop_requested.is_set():
                restarts += 1
                run.outcome.restarts = restarts
                self._nodeerr(run, f"{result.reason}; restarting ({restarts}) per restart_policy")
                await asyncio.sleep(min(0.1 * 2**restarts, 2.0))
                continue
            run.outcome.exit_code = result.exit_code
            if ok:
                run.outcome.status, run.outcome.reason = "finished", result.reason
            else:
                self._op_failed(run, result.reason, "client", result.exit_code)
            return

    def _op_failed(self, run: OpRun, reason: str, fault: Fault, exit_code: int | None = None
                   ) -> None:
        run.outcome.status, run.outcome.reason, run.outcome.fault = "failed", reason, fault
        run.outcome.exit_code = exit_code
        self._nodeerr(run, f"op failed: {reason}")
        self._fail_fast()

    def _nodeerr(self, run: OpRun | None, message: str) -> None:
        if run is not None:
            run.logs.append(("nodeerr", message))
        log.info("job runner: %s", message, extra={"op": run.op.id if run else None})
        if self.on_log is not None:
            self.on_log(run.op.id if run else "", "nodeerr", message)

    # -------------------------------------------------------------------- health checks

    async def _health(self, run: OpRun, handle: PodmanContainer, ports: list[PortPlan]) -> None:
        if not ports:
            run.released.set()  # nothing exposed: started is startup success
            return
        checker = HealthChecker(self._http, self.limits)
        await checker.wait_until_healthy(ports)
        self._nodeerr(run, "startup success: every health check passed; endpoint ONLINE")
        if self.on_service is not None:
            self.on_service(run.op.id, dict(run.endpoints), True)
        self._billable = True
        run.released.set()

        def changed(ok: bool) -> None:
            self._nodeerr(run, f"endpoint {'ONLINE' if ok else 'OFFLINE'}")
            if self.on_service is not None:
                self.on_service(run.op.id, dict(run.endpoints), ok)

        await checker.watch(ports, changed)

    # -------------------------------------------------------------------- files

    def release_resources(self) -> None:
        """Unpin the models this job used (the cache may evict them later)."""
        while self._pinned and self.hf_cache is not None:
            self.hf_cache.release(self._pinned.pop())


def _secs(started: float) -> int:
    return max(1, math.ceil(time.monotonic() - started))


__all__ = [
    "BlobFetcher",
    "JobLogSink",
    "JobOutcome",
    "JobRunner",
    "OpOutcome",
    "OutputFile",
]
