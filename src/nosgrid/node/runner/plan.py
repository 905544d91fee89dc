"""Pure planning of a job run: names, the op → ContainerSpec translation, ports, restarts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nosgrid.core.jobs.plan import container_name, volume_name
from nosgrid.core.jobs.spec import (
    ExposedPort,
    HttpHealthCheck,
    RestartPolicyOnFailure,
    RunArgs,
    WebSocketHealthCheck,
)
from nosgrid.node.executor import ContainerSpec, MiB, Mount, VolumeMount

#: ``on-failure`` without ``restart_tries`` and ``always``/``unless-stopped`` restart at most
#: this often: a job cannot spin a crashing container until its deadline.
DEFAULT_MAX_RESTARTS: Final = 3
#: What ``%%ops.ID.host%%`` resolves to when the ops share a pod (``meta.nosgrid.network: job``).
POD_HOST: Final = "127.0.0.1"
DEFAULT_WORK_DIR: Final = "/work"
JOB_LABEL: Final = "nosgrid.job"
FLOW_LABEL: Final = "nosgrid.flow"  # one assignment of a job: what cleanup removes

HealthCheck = HttpHealthCheck | WebSocketHealthCheck


@dataclass(frozen=True)
class RunnerLimits:
    """Per-container limits and the runner's timings (a market may tighten them).

    Example::

        RunnerLimits(memory_bytes=256 * MiB, health_interval_s=0.5)
    """

    memory_bytes: int = 1024 * MiB
    cpus: float = 1.0
    pids_limit: int = 256
    log_limit_bytes: int = 1 * MiB
    output_limit_bytes: int = 256 * MiB
    health_interval_s: float = 0.25
    continuous_interval_s: float = 5.0
    health_timeout_s: float = 2.0
    stop_grace_s: float = 0.0


@dataclass(frozen=True)
class PortPlan:
    """One exposed port: its container port, the host loopback port it is published on, checks."""

    port: int
    host_port: int
    checks: tuple[HealthCheck, ...] = ()


def flow_id(job_id: str, attempt: int = 1) -> str:
    """The flow id of one assignment of a job: a safe container-name prefix.

    It carries the attempt, so a job requeued after its node vanished never collides with
    the dead run's containers, volumes or files: on a host shared by several nodes (a local
    marketplace) those may still exist until the restarted agent removes them.

    >>> flow_id("ab12"), flow_id("a/b", attempt=2)
    ('nosgrid-ab12-a1', 'nosgrid-a-b-a2')
    """
    return f"nosgrid-{re.sub(r'[^A-Za-z0-9_.-]', '-', job_id)[:80]}-a{max(1, attempt)}"


def pod_name(flow: str) -> str:
    """The pod shared by the ops of a job with ``network: job``.

    >>> pod_name("nosgrid-ab12")
    'nosgrid-ab12-pod'
    """
    return f"{flow}-pod"


def op_host(flow: str, index: int, *, in_pod: bool) -> str:
    """What ``%%ops.ID.host%%`` gives: ``127.0.0.1`` in a shared pod, else the container name.

    >>> op_host("f", 2, in_pod=True), op_host("f", 2, in_pod=False)
    ('127.0.0.1', 'f-2')
    """
    return POD_HOST if in_pod else container_name(flow, index)


def exposed_ports(args: RunArgs) -> list[tuple[int, tuple[HealthCheck, ...]]]:
    """The concrete ports of resolved ``args.expose`` with their health checks.

    Port ranges and leftover literals are skipped (the runner says so in a ``nodeerr`` line).

    >>> exposed_ports(RunArgs(image="busybox", expose=8080))
    [(8080, ())]
    >>> [p for p, _ in exposed_ports(RunArgs(image="busybox", expose=[80, {"port": 81}]))]
    [80, 81]
    """
    raw = args.expose
    if raw is None:
        return []
    elements = raw if isinstance(raw, list) else [raw]
    found: list[tuple[int, tuple[HealthCheck, ...]]] = []
    for element in elements:
        if isinstance(element, bool):
            continue
        if isinstance(element, int):
            found.append((element, ()))
        elif isinstance(element, ExposedPort) and isinstance(element.port, int):
            found.append((element.port, tuple(element.health_checks or ())))
    return found


def restart_limit(args: RunArgs, *, exit_ok: bool) -> int:
    """How many restarts the op's ``restart_policy`` allows after an exit (ok or not).

    >>> restart_limit(RunArgs(image="b", restart_policy="on-failure"), exit_ok=False)
    3
    >>> restart_limit(RunArgs(image="b", restart_policy="on-failure"), exit_ok=True)
    0
    """
    policy = args.restart_policy
    if policy is None or policy == "no":
        return 0
    if isinstance(policy, RestartPolicyOnFailure):
        if exit_ok:
            return 0
        return DEFAULT_MAX_RESTARTS if policy.restart_tries is None else policy.restart_tries
    if policy == "on-failure":
        return 0 if exit_ok else DEFAULT_MAX_RESTARTS
    return DEFAULT_MAX_RESTARTS  # always / unless-stopped


def container_spec(
    args: RunArgs,
    *,
    flow: str,
    index: int,
    job_id: str,
    limits: RunnerLimits,
    pod: str | None,
    ports: Mapping[int, int],
    output_mounts: Mapping[str, Path],
    input_mounts: Mapping[str, Path],
) -> ContainerSpec:
    """The hardened container for one resolved op (pure; Nosana's argv rules).

    ``cmd`` as a string runs under ``/bin/sh -c``, an array verbatim; volumes of
    ``container/create-volume`` ops are the per-job ``<flow>-<name>`` volumes.
    """
    entrypoint = args.entrypoint_argv()
    mounts = [Mount(src, dst, read_only=False) for dst, src in output_mounts.items()]
    mounts += [Mount(src, dst, read_only=True) for dst, src in input_mounts.items()]
    return ContainerSpec(
        image=args.image,
        argv=tuple(args.command_argv() or ()),
        entrypoint=tuple(entrypoint) if entrypoint is not None else None,
        env=dict(args.env or {}),
        work_dir=args.work_dir or DEFAULT_WORK_DIR,
        mounts=tuple(mounts),
        volumes=tuple(
            VolumeMount(volume_name(flow, v.name), v.dest) for v in (args.volumes or ())
        ),
        memory_bytes=limits.memory_bytes,
        cpus=limits.cpus,
        pids_limit=limits.pids_limit,
        gpus=("nvidia.com/gpu=all",) if args.gpu else (),
        pod=pod,
        ports=dict(ports),
        log_limit_bytes=limits.log_limit_bytes,
        labels={JOB_LABEL: job_id, FLOW_LABEL: flow},
        name=container_name(flow, index),
    )
