"""The executor's own Podman settings, and the environment that points Podman at them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: What this machine needs (see MACHINE.md): runc (crun fails on hybrid cgroups), the
#: cgroupfs manager (no systemd), and no default ulimits (setting RLIMIT_NOFILE fails).
CONTAINERS_CONF: Final[str] = """\
# Written by nosgrid's executor; Podman reads it through CONTAINERS_CONF.
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

#: Flags passed on every podman invocation that runs something.
ENGINE_FLAGS: Final[tuple[str, ...]] = ("--runtime", "runc", "--cgroup-manager=cgroupfs")


def default_state_dir() -> Path:
    """The executor's state directory: ``$NOSGRID_STATE_DIR/executor`` or ``~/.local/state``.

    Example::

        >>> default_state_dir().name
        'executor'
    """
    base = os.environ.get("NOSGRID_STATE_DIR")
    if base:
        return Path(base) / "executor"
    xdg = os.environ.get("XDG_STATE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return root / "nosgrid" / "executor"


def write_containers_conf(state_dir: Path) -> Path:
    """Write the executor's ``containers.conf`` into ``state_dir`` (idempotent) and return it.

    Example::

        conf = write_containers_conf(Path("/var/lib/nosgrid/executor"))
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "containers.conf"
    if not path.exists() or path.read_text() != CONTAINERS_CONF:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(CONTAINERS_CONF)
        tmp.replace(path)
    return path


def podman_env(state_dir: Path) -> dict[str, str]:
    """The process environment for podman: ours, with ``CONTAINERS_CONF`` set.

    Example::

        env = podman_env(default_state_dir())
        assert env["CONTAINERS_CONF"].endswith("containers.conf")
    """
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(write_containers_conf(state_dir))
    return env
