"""The podman command line for a container spec: validation and argument building (pure).

Kept apart from the runtime that spawns podman, so the exact hardened flags can be read,
tested and reused (``bench/`` runs the same ``podman run`` directly as its baseline).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Final

from nosgrid.node.executor.base import ContainerSpec, ContainerSpecInvalid, MiB
from nosgrid.node.executor.config import ENGINE_FLAGS

EXECUTOR_LABEL: Final = "nosgrid.executor"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Keys podman itself reads: these go on the command line instead of through its environment.
_PODMAN_OWN_ENV = re.compile(
    r"^(PATH|HOME|TMPDIR|LD_.*|CONTAINERS_.*|XDG_.*|PODMAN_.*|REGISTRY.*)$"
)


def _check_abs(path: str, what: str) -> None:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or "," in path or "\n" in path:
        raise ContainerSpecInvalid(f"{what} must be an absolute path without '..' or ',': {path!r}")


def validate_spec(spec: ContainerSpec) -> None:
    """Refuse a spec that could not run safely; raises ``ContainerSpecInvalid``.

    Example::

        validate_spec(ContainerSpec(image="localhost/nosgrid-busybox:test"))
    """
    if not spec.image or spec.image.startswith("-") or any(c.isspace() for c in spec.image):
        raise ContainerSpecInvalid(f"not an image name: {spec.image!r}")
    if spec.name is not None and not NAME_RE.match(spec.name):
        raise ContainerSpecInvalid(f"not a container name: {spec.name!r}")
    _check_abs(spec.work_dir, "work_dir")
    for key in spec.env:
        if not _ENV_KEY.match(key):
            raise ContainerSpecInvalid(f"not an environment variable name: {key!r}")
    for mount in spec.mounts:
        _check_abs(mount.target, "mount target")
        _check_abs(str(mount.source), "mount source")
        if not mount.source.exists():
            raise ContainerSpecInvalid(f"mount source does not exist: {mount.source}")
    for volume in spec.volumes:
        _check_abs(volume.target, "volume target")
        if not NAME_RE.match(volume.volume):
            raise ContainerSpecInvalid(f"not a volume name: {volume.volume!r}")
    for cport, hport in spec.ports.items():
        if not (0 < cport < 65536 and 0 < hport < 65536):
            raise ContainerSpecInvalid(f"ports must be 1-65535: {cport} -> {hport}")
    if spec.memory_bytes < 6 * MiB or spec.cpus <= 0 or spec.pids_limit < 1:
        raise ContainerSpecInvalid("memory must be >= 6 MiB, cpus > 0 and pids_limit >= 1")
    for gpu in spec.gpus:
        if not re.match(r"^[a-z0-9.-]+/[a-z0-9.-]+=[A-Za-z0-9_.:-]+$", gpu):
            raise ContainerSpecInvalid(f"GPUs are CDI names like 'nvidia.com/gpu=0': {gpu!r}")


def run_args(
    spec: ContainerSpec, *, name: str, host_work_dir: Path, seccomp_profile: Path
) -> tuple[list[str], dict[str, str]]:
    """The ``podman run`` argument list for ``spec`` and the env values passed by name (pure).

    Example::

        args, env = run_args(spec, name="nosgrid-1", host_work_dir=Path("/w"),
                             seccomp_profile=Path("/s.json"))
        # ["--runtime", "runc", ..., "run", "--rm", "--name", "nosgrid-1", ...]
    """
    memory = str(spec.memory_bytes)
    args = [
        *ENGINE_FLAGS,
        "run",
        "--rm",
        "--name", name,
        "--pull", "never",
        "--log-driver", "none",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,mode=1777,size={spec.tmpfs_bytes}",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--security-opt", f"seccomp={seccomp_profile}",
        "--user", spec.user,
        "--memory", memory,
        "--memory-swap", memory,
        "--cpus", f"{spec.cpus:g}",
        "--pids-limit", str(spec.pids_limit),
        "--workdir", spec.work_dir,
        "--mount", f"type=bind,src={host_work_dir},dst={spec.work_dir},rw=true",
        "--label", f"{EXECUTOR_LABEL}=1",
    ]  # fmt: skip
    if spec.pod:
        args += ["--pod", spec.pod]
    else:
        args += ["--network", "none"]
    for mount in spec.mounts:
        ro = ",ro=true" if mount.read_only else ""
        args += ["--mount", f"type=bind,src={mount.source},dst={mount.target}{ro}"]
    for volume in spec.volumes:
        ro = ",ro=true" if volume.read_only else ""
        args += ["--mount", f"type=volume,src={volume.volume},dst={volume.target}{ro}"]
    by_name: dict[str, str] = {}
    for key, value in spec.env.items():
        if _PODMAN_OWN_ENV.match(key):
            args += ["--env", f"{key}={value}"]
        else:  # the value travels in podman's environment, not in the process list
            args += ["--env", key]
            by_name[key] = value
    for key, value in spec.labels.items():
        args += ["--label", f"{key}={value}"]
    for gpu in spec.gpus:
        args += ["--device", gpu]
    if spec.entrypoint is not None:
        import json

        args += ["--entrypoint", json.dumps(list(spec.entrypoint))]
    args += ["--", spec.image, *spec.argv]
    return args, by_name

