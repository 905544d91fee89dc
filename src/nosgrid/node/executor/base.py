"""What a container runtime must do for the node agent: the protocol and its plain values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

from nosgrid.core.errors import ExecutorError

MiB: Final = 1024 * 1024

LogStream = Literal["stdout", "stderr"]
#: Called once per log line (without its newline) while a container runs.
LogCallback = Callable[[LogStream, str], None]
ContainerStatus = Literal["exited", "oom_killed", "timed_out", "failed_to_start", "stopped"]
#: ``none``: only ``lo``. Put several containers in one ``pod`` to let them talk over lo.
NetworkMode = Literal["none"]


class PodmanUnavailable(ExecutorError):
    """Podman is missing or not working on this node."""

    code = "podman_unavailable"
    default_message = "Podman is not installed or not working; run `make system`."


class ContainerSpecInvalid(ExecutorError):
    """A spec the executor refuses before starting anything (bad path, bad port, ...)."""

    code = "container_spec_invalid"
    http_status = 400
    default_message = "The container spec is not valid; see the message."


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container (read-only unless asked).

    Example::

        Mount(Path("/var/lib/nosgrid/jobs/42/inputs"), "/inputs")
    """

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class VolumeMount:
    """A named Podman volume (see ``create_volume``) mounted at ``target``.

    Example::

        VolumeMount("nosgrid-job42-models", "/models", read_only=True)
    """

    volume: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to run one op's container, hardened by default.

    ``host_work_dir`` is bind-mounted read-write at ``work_dir``; when it is ``None`` the
    executor makes a private one and deletes it after the run, after copying the files
    matching ``outputs`` (globs relative to ``work_dir``) into ``output_dir``.
    ``ports`` maps a container port to a port on the host's 127.0.0.1 (and nowhere else).

    Example::

        spec = ContainerSpec(
            image="localhost/nosgrid-busybox:test",
            argv=("sh", "-c", "echo hello > out.txt"),
            outputs=("out.txt",),
            output_dir=Path("/tmp/results"),
            memory_bytes=64 * MiB,
        )
    """

    image: str
    argv: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    work_dir: str = "/work"
    host_work_dir: Path | None = None
    user: str = "1000:1000"
    mounts: tuple[Mount, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    memory_bytes: int = 512 * MiB
    cpus: float = 1.0
    pids_limit: int = 256
    gpus: tuple[str, ...] = ()
    network: NetworkMode = "none"
    pod: str | None = None
    ports: Mapping[int, int] = field(default_factory=dict)
    tmpfs_bytes: int = 64 * MiB
    log_limit_bytes: int = 1 * MiB
    outputs: tuple[str, ...] = ()
    output_dir: Path | None = None
    output_limit_bytes: int = 256 * MiB
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class ContainerResult:
    """How a container ended. ``started_at``/``finished_at`` are ``time.monotonic()`` values.

    Example::

        if result.status == "oom_killed":
            print(result.reason)  # "killed: memory limit of 64 MiB exceeded (exit 137)"
    """

    name: str
    status: ContainerStatus
    exit_code: int | None
    reason: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    started_at: float
    finished_at: float
    outputs: tuple[Path, ...] = ()
    outputs_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the container exited with code 0."""
        return self.status == "exited" and self.exit_code == 0

    @property
    def duration_s(self) -> float:
        """Seconds from start to finish."""
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run inside a running container (health checks)."""

    exit_code: int
    output: str
    timed_out: bool = False


class ContainerHandle(Protocol):
    """A started container; pass it to ``wait``/``stop``."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> ContainerSpec: ...


class ContainerRuntime(Protocol):
    """The seam between the node agent and a container engine (Podman by default).

    Example::

        runtime: ContainerRuntime = PodmanRuntime(state_dir)
        result = await runtime.run(spec, deadline_s=60, on_log=lambda s, line: print(s, line))
    """

    async def run(
        self, spec: ContainerSpec, *, deadline_s: float, on_log: LogCallback | None = None
    ) -> ContainerResult:
        """Start, stream logs, wait until exit or deadline, clean up; never raises for the job."""
        ...

    async def start(
        self, spec: ContainerSpec, *, on_log: LogCallback | None = None
    ) -> ContainerHandle:
        """Start a container (e.g. a service) and return at once; logs stream to ``on_log``."""
        ...

    async def wait(
        self, handle: ContainerHandle, *, deadline_s: float | None = None
    ) -> ContainerResult:
        """Wait for a started container to end (killing it at the deadline) and clean up."""
        ...

    async def stop(self, handle: ContainerHandle, *, grace_s: float = 0.0) -> ContainerResult:
        """Stop a started container (SIGTERM, SIGKILL after ``grace_s``) and clean up."""
        ...

    async def exec(
        self, handle: ContainerHandle, argv: list[str], *, timeout_s: float = 5.0
    ) -> ExecResult:
        """Run ``argv`` inside a running container (health checks)."""
        ...

    async def remove(self, name: str) -> None:
        """Force-remove a container by name; no error if it is gone."""
        ...

    async def create_volume(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
    ) -> str:
        """Create a named volume (``options``: ``--opt k=v``) and return its name."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Remove a named volume; no error if it is gone."""
        ...

    async def create_pod(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        """Create a pod with no network but ``lo``, shared by the containers put in it."""
        ...

    async def pod_pid(self, name: str) -> int:
        """The host pid of the pod's infra process (whose network namespace it shares)."""
        ...

    async def remove_pod(self, name: str) -> None:
        """Remove a pod and everything in it; no error if it is gone."""
        ...
