"""The hardened container runtime over the podman CLI (argument lists, never a shell)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from nosgrid.node.executor.args import EXECUTOR_LABEL, NAME_RE, run_args, validate_spec
from nosgrid.node.executor.base import (
    ContainerResult,
    ContainerSpec,
    ContainerSpecInvalid,
    ContainerStatus,
    ExecResult,
    LogCallback,
    MiB,
    PodmanUnavailable,
)
from nosgrid.node.executor.config import ENGINE_FLAGS, default_state_dir, podman_env
from nosgrid.node.executor.forward import LoopbackForwarder
from nosgrid.node.executor.output import (
    LogState,
    collect_outputs,
    podman_error,
    read_stream,
    start_failure,
)
from nosgrid.node.executor.seccomp import PODMAN_DEFAULT_PROFILE, write_strict_profile

log = logging.getLogger(__name__)

#: podman's own exit codes (its error, cannot invoke, not found), not the container's
_PODMAN_ERROR_EXITS: Final = (125, 126, 127)


@dataclass
class PodmanContainer:
    """A container started by ``PodmanRuntime.start``; pass it to ``wait``, ``stop``, ``exec``."""

    name: str
    spec: ContainerSpec
    started_at: float
    _proc: asyncio.subprocess.Process
    _readers: list[asyncio.Task[None]]
    _logs: LogState
    _stderr_tail: deque[str]
    _work_dir: Path
    _own_work_dir: bool
    _forwarders: list[LoopbackForwarder] = field(default_factory=list)
    _stopped: bool = False
    _result: ContainerResult | None = None


class PodmanRuntime:
    """Runs job containers with Podman, hardened by default (see docs/isolation.md).

    Example::

        runtime = PodmanRuntime()  # writes containers.conf + seccomp profile to its state dir
        result = await runtime.run(
            ContainerSpec(image="localhost/nosgrid-busybox:test", argv=("echo", "hi")),
            deadline_s=30,
            on_log=lambda stream, line: print(stream, line),
        )
        assert result.ok
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        podman: str = "podman",
        seccomp_base: Path = PODMAN_DEFAULT_PROFILE,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.podman = podman
        #: put on every container, pod and volume this runtime creates (``nosgrid up``
        #: labels its nodes' containers with its run, to find and remove leftovers)
        self.labels = dict(labels or {})
        self.work_root = self.state_dir / "work"
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.work_root.chmod(0o711)
        self._env = podman_env(self.state_dir)
        if not seccomp_base.is_file():
            raise PodmanUnavailable(f"{seccomp_base} is missing; apt-get install -y podman")
        self.seccomp_profile = write_strict_profile(
            self.state_dir / "seccomp-strict.json", seccomp_base
        )

    # ------------------------------------------------------------------ small podman calls

    async def _podman(
        self, *args: str, timeout_s: float = 30.0, env: Mapping[str, str] | None = None
    ) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.podman,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**self._env, **(env or {})},
                cwd=self.state_dir,  # conmon drops files such as `oom` in its working dir
            )
        except FileNotFoundError as exc:
            raise PodmanUnavailable("podman is not installed; run `make system`") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise PodmanUnavailable(f"podman {args[0]} did not answer in {timeout_s:g} s") from exc
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def image_exists(self, image: str) -> bool:
        """Whether ``image`` is present locally (nothing is ever pulled)."""
        rc, _, _ = await self._podman("image", "exists", image)
        return rc == 0

    async def remove(self, name: str) -> None:
        """Force-remove container ``name`` (kills it at once); no error if it is gone."""
        rc, _, err = await self._podman("rm", "--force", "--time", "0", "--ignore", name)
        if rc != 0:
            log.warning("podman rm failed", extra={"container": name, "err": err.strip()})

    async def list_containers(self, *, label: str = EXECUTOR_LABEL) -> list[str]:
        """Names of the containers (running or not) that carry ``label`` (recovery)."""
        rc, out, err = await self._podman(
            "ps", "--all", "--filter", f"label={label}", "--format", "{{.Names}}"
        )
        if rc != 0:
            raise PodmanUnavailable(f"podman ps failed: {err.strip()}")
        return [line for line in out.splitlines() if line.strip()]

    async def remove_all(self, *, label: str = EXECUTOR_LABEL) -> list[str]:
        """Remove every container carrying ``label`` (after a restart); return their names."""
        names = await self.list_containers(label=label)
        for name in names:
            await self.remove(name)
        return names

    async def sweep(self, label: str) -> list[str]:
        """Remove every container, pod and volume carrying ``label`` (``key=value``); return
        their names. For what a node killed mid-job left behind (``nosgrid up`` on exit).

        Example::

            await PodmanRuntime().sweep("nosgrid.up=/root/.local/share/nosgrid/up")
        """
        removed = await self.remove_all(label=label)
        for kind, listing, remove in (("pod", "ps", self.remove_pod),
                                      ("volume", "ls", self.remove_volume)):
            rc, out, err = await self._podman(kind, listing, "--filter", f"label={label}",
                                              "--format", "{{.Name}}")
            if rc != 0:
                raise PodmanUnavailable(f"podman {kind} {listing} failed: {err.strip()}")
            for name in out.split():
                await remove(name)
                removed.append(name)
        return removed

    async def create_volume(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
    ) -> str:
        """Create a named volume (e.g. a model cache shared by a job's ops).

        ``options`` become ``--opt k=v``; ``{"o": "uid=1000,gid=1000"}`` makes it writable
        by the job user.
        """
        if not NAME_RE.match(name):
            raise ContainerSpecInvalid(f"not a volume name: {name!r}")
        label_args = [a for k, v in {**self.labels, **(labels or {})}.items()
                      for a in ("--label", f"{k}={v}")]
        label_args += [a for k, v in (options or {}).items() for a in ("--opt", f"{k}={v}")]
        rc, _, err = await self._podman("volume", "create", *label_args, name)
        if rc != 0:
            raise PodmanUnavailable(f"podman volume create {name} failed: {err.strip()}")
        return name

    async def remove_volume(self, name: str) -> None:
        """Remove a named volume; no error if it is gone."""
        rc, _, err = await self._podman("volume", "rm", "--force", name)
        if rc != 0 and "no such volume" not in err.lower():
            log.warning("podman volume rm failed", extra={"volume": name, "err": err.strip()})

    async def create_pod(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        """Create a pod whose only network is ``lo``, shared by the containers put in it."""
        if not NAME_RE.match(name):
            raise ContainerSpecInvalid(f"not a pod name: {name!r}")
        label_args = [a for k, v in {**self.labels, **(labels or {})}.items()
                      for a in ("--label", f"{k}={v}")]
        rc, _, err = await self._podman(
            *ENGINE_FLAGS,
            "pod", "create", "--network", "none", "--label", f"{EXECUTOR_LABEL}=1",
            *label_args, "--name", name,
        )  # fmt: skip
        if rc != 0:
            raise PodmanUnavailable(f"podman pod create {name} failed: {err.strip()}")
        rc, _, err = await self._podman(*ENGINE_FLAGS, "pod", "start", name)
        if rc != 0:
            await self.remove_pod(name)
            raise PodmanUnavailable(f"podman pod start {name} failed: {err.strip()}")
        return name

    async def pod_pid(self, name: str) -> int:
        """The host pid of the pod's infra process (its network namespace is the pod's)."""
        rc, out, err = await self._podman("pod", "inspect", "--format",
                                          "{{.InfraContainerID}}", name)
        if rc != 0 or not out.strip():
            raise PodmanUnavailable(f"podman pod inspect {name} failed: {err.strip()}")
        rc, pid, err = await self._podman("inspect", "--format", "{{.State.Pid}}", out.strip())
        if rc != 0 or not pid.strip().isdigit() or int(pid.strip()) <= 0:
            raise PodmanUnavailable(f"the infra container of pod {name} is not running: "
                                    f"{err.strip()}")
        return int(pid.strip())

    async def remove_pod(self, name: str) -> None:
        """Remove a pod and its containers; no error if it is gone."""
        rc, _, err = await self._podman("pod", "rm", "--force", "--ignore", "--time", "0", name)
        if rc != 0:
            log.warning("podman pod rm failed", extra={"pod": name, "err": err.strip()})

    # ------------------------------------------------------------------ running containers

    def _make_work_dir(self, spec: ContainerSpec, name: str) -> tuple[Path, bool]:
        uid, gid = _numeric_user(spec.user)
        if spec.host_work_dir is not None:
            path, own = spec.host_work_dir, False
            path.mkdir(parents=True, exist_ok=True)
        else:
            path, own = self.work_root / name, True
            path.mkdir(mode=0o700)
        if uid is not None and os.geteuid() == 0:
            os.chown(path, uid, gid if gid is not None else uid)
        return path, own

    async def start(
        self, spec: ContainerSpec, *, on_log: LogCallback | None = None
    ) -> PodmanContainer:
        """Start ``spec`` and return at once; logs stream to ``on_log`` line by line.

        Raises ``ContainerSpecInvalid`` for a bad spec and ``PodmanUnavailable`` when podman
        cannot be run at all; a container that fails to start shows in ``wait``'s result.

        Example::

            svc = await runtime.start(spec_with_ports)
            ...
            result = await runtime.stop(svc)
        """
        if self.labels:
            spec = dataclasses.replace(spec, labels={**self.labels, **spec.labels})
        validate_spec(spec)
        name = spec.name or f"nosgrid-{uuid.uuid4().hex[:12]}"
        work_dir, own = self._make_work_dir(spec, name)
        args, env_by_name = run_args(
            spec, name=name, host_work_dir=work_dir, seccomp_profile=self.seccomp_profile
        )
        started_at = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                self.podman,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**self._env, **env_by_name},
                cwd=self.state_dir,
                start_new_session=True,  # the agent's Ctrl-C must not reach podman directly
            )
        except FileNotFoundError as exc:
            if own:
                shutil.rmtree(work_dir, ignore_errors=True)
            raise PodmanUnavailable("podman is not installed; run `make system`") from exc
        logs = LogState(limit=spec.log_limit_bytes)
        tail: deque[str] = deque(maxlen=5)
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(read_stream(proc.stdout, "stdout", logs, on_log, None)),
            asyncio.create_task(read_stream(proc.stderr, "stderr", logs, on_log, tail)),
        ]
        handle = PodmanContainer(
            name=name,
            spec=spec,
            started_at=started_at,
            _proc=proc,
            _readers=readers,
            _logs=logs,
            _stderr_tail=tail,
            _work_dir=work_dir,
            _own_work_dir=own,
        )
        log.info("container started", extra={"container": name, "image": spec.image})
        if spec.ports:
            try:
                await self._publish(handle)
            except BaseException:
                await self.stop(handle)
                raise
        return handle

    async def _publish(self, handle: PodmanContainer) -> None:
        if os.geteuid() != 0:
            raise ContainerSpecInvalid("publishing ports needs the executor to run as root")
        pid = 0
        for _ in range(200):  # the container's first process appears within ~0.2 s
            if handle._proc.returncode is not None:
                return  # it already ended; wait() reports why
            rc, out, _ = await self._podman("inspect", "--format", "{{.State.Pid}}", handle.name)
            if rc == 0 and out.strip().isdigit() and int(out.strip()) > 0:
                pid = int(out.strip())
                break
            await asyncio.sleep(0.05)
        if not pid:
            raise PodmanUnavailable(f"container {handle.name} did not start in 10 s")
        for cport, hport in handle.spec.ports.items():
            fwd = LoopbackForwarder(pid, cport, hport)
            handle._forwarders.append(fwd)
            await fwd.start()

    async def wait(
        self, handle: PodmanContainer, *, deadline_s: float | None = None
    ) -> ContainerResult:
        """Wait for the container to end, killing it ``deadline_s`` after its start; clean up.

        Never raises for what the job did: exits, kills and start failures come back as a
        ``ContainerResult``. On cancellation the container is removed before re-raising.
        """
        if handle._result is not None:
            return handle._result
        timed_out = False
        try:
            remaining = None
            if deadline_s is not None:
                remaining = max(0.0, handle.started_at + deadline_s - time.monotonic())
            try:
                await asyncio.wait_for(handle._proc.wait(), remaining)
            except TimeoutError:
                timed_out = True
                await self.remove(handle.name)
                await self._reap(handle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*handle._readers), 5.0)
            finished_at = time.monotonic()
            result = self._classify(handle, timed_out, finished_at)
        except BaseException:
            await asyncio.shield(self._cleanup(handle, force=True))
            raise
        outputs, outputs_truncated = await asyncio.to_thread(
            collect_outputs, handle.spec, handle._work_dir
        )
        force = timed_out or handle._stopped or result.status == "failed_to_start"
        await asyncio.shield(self._cleanup(handle, force=force))
        result = ContainerResult(
            **{**result.__dict__, "outputs": outputs, "outputs_truncated": outputs_truncated}
        )
        handle._result = result
        log.info(
            "container finished",
            extra={"container": handle.name, "status": result.status, "exit": result.exit_code},
        )
        return result

    async def _reap(self, handle: PodmanContainer) -> None:
        # A `podman run` cancelled right after it was spawned may create the container only
        # after the first `rm -f`: remove again while it is still running.
        for _ in range(20):
            try:
                await asyncio.wait_for(asyncio.shield(handle._proc.wait()), 0.5)
                return
            except TimeoutError:
                await self.remove(handle.name)
        try:
            await asyncio.wait_for(handle._proc.wait(), 1.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle._proc.pid, signal.SIGKILL)
            await handle._proc.wait()

    async def _cleanup(self, handle: PodmanContainer, *, force: bool) -> None:
        for fwd in handle._forwarders:
            await fwd.close()
        handle._forwarders.clear()
        if force or handle._proc.returncode is None:
            await self.remove(handle.name)
            await self._reap(handle)
        for task in handle._readers:
            task.cancel()
        if handle._own_work_dir:
            await asyncio.to_thread(shutil.rmtree, handle._work_dir, True)

    def _classify(
        self, handle: PodmanContainer, timed_out: bool, finished_at: float
    ) -> ContainerResult:
        spec, logs = handle.spec, handle._logs
        rc = handle._proc.returncode
        status: ContainerStatus
        if timed_out:
            status, reason = "timed_out", "deadline reached; the container was killed"
        elif handle._stopped:
            status, reason = "stopped", "stopped by the node"
        elif rc in _PODMAN_ERROR_EXITS and podman_error(handle._stderr_tail):
            status, reason = "failed_to_start", start_failure(handle._stderr_tail[-1], spec)
        elif rc == 137:
            status = "oom_killed"
            reason = (
                f"killed with SIGKILL (exit 137): the memory limit of "
                f"{spec.memory_bytes // MiB} MiB was most likely exceeded"
            )
        else:
            status, reason = "exited", f"exited with code {rc}"
        if logs.truncated:
            reason += f"; logs truncated at {logs.limit} bytes"
        return ContainerResult(
            name=handle.name,
            status=status,
            exit_code=None if status in ("failed_to_start", "timed_out") else rc,
            reason=reason,
            stdout_bytes=logs.counts["stdout"],
            stderr_bytes=logs.counts["stderr"],
            truncated=logs.truncated,
            started_at=handle.started_at,
            finished_at=finished_at,
        )

    async def stop(self, handle: PodmanContainer, *, grace_s: float = 0.0) -> ContainerResult:
        """Stop a started container (SIGTERM, then SIGKILL after ``grace_s``) and clean up."""
        if handle._result is not None:
            return handle._result
        handle._stopped = True
        if handle._proc.returncode is None:
            await self._podman("stop", "--ignore", "--time", str(int(grace_s)), handle.name)
        return await self.wait(handle)

    async def run(
        self, spec: ContainerSpec, *, deadline_s: float, on_log: LogCallback | None = None
    ) -> ContainerResult:
        """Run ``spec`` to the end or the deadline, streaming logs; remove everything after.

        Example::

            result = await runtime.run(spec, deadline_s=60)
            print(result.status, result.exit_code, result.reason)
        """
        handle = await self.start(spec, on_log=on_log)
        return await self.wait(handle, deadline_s=deadline_s)

    async def exec(
        self, handle: PodmanContainer, argv: list[str], *, timeout_s: float = 5.0
    ) -> ExecResult:
        """Run ``argv`` in the running container as its user (a health check).

        Example::

            ok = (await runtime.exec(svc, ["nc", "-z", "127.0.0.1", "8080"])).exit_code == 0
        """
        try:
            rc, out, err = await self._podman("exec", handle.name, *argv, timeout_s=timeout_s)
        except PodmanUnavailable as exc:
            return ExecResult(exit_code=-1, output=exc.message, timed_out=True)
        return ExecResult(exit_code=rc, output=(out + err)[-65536:])


def _numeric_user(user: str) -> tuple[int | None, int | None]:
    uid, _, gid = user.partition(":")
    return (
        int(uid) if uid.isdigit() else None,
        int(gid) if gid.isdigit() else None,
    )
