"""What survives an agent restart: the job in flight, in a small JSON file written atomically."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "agent-state.json"


@dataclass(frozen=True)
class InFlightJob:
    """A job this node started and has not yet reported.

    Example::

        InFlightJob(job_id="j1", started_at=1700000000.0, containers=("j1-0",), attempt=2)
    """

    job_id: str
    started_at: float
    containers: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    pod: str | None = None
    attempt: int = 1  # the job's assignment count: names the run's flow


@dataclass
class AgentState:
    """The agent's persisted state (one job at a time).

    Example::

        store = StateFile(Path("/var/lib/nosgrid/node"))
        store.save(AgentState(in_flight=InFlightJob("j1", 0.0)))
        assert store.load().in_flight.job_id == "j1"
    """

    node_id: str | None = None
    in_flight: InFlightJob | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        job = self.in_flight
        return {
            "version": 1,
            "node_id": self.node_id,
            "in_flight": None
            if job is None
            else {
                "job_id": job.job_id,
                "started_at": job.started_at,
                "containers": list(job.containers),
                "volumes": list(job.volumes),
                "pod": job.pod,
                "attempt": job.attempt,
            },
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentState:
        raw = data.get("in_flight")
        job = None
        if isinstance(raw, dict) and isinstance(raw.get("job_id"), str):
            job = InFlightJob(
                job_id=raw["job_id"],
                started_at=float(raw.get("started_at") or 0.0),
                containers=tuple(str(c) for c in raw.get("containers") or ()),
                volumes=tuple(str(v) for v in raw.get("volumes") or ()),
                pod=raw.get("pod") if isinstance(raw.get("pod"), str) else None,
                attempt=raw["attempt"] if isinstance(raw.get("attempt"), int) else 1,
            )
        node_id = data.get("node_id")
        extra = data.get("extra")
        return cls(
            node_id=node_id if isinstance(node_id, str) else None,
            in_flight=job,
            extra=extra if isinstance(extra, dict) else {},
        )


class StateFile:
    """``<state_dir>/agent-state.json``: load (tolerating a missing or corrupt file) and save."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE

    def load(self) -> AgentState:
        """The saved state; an empty one when the file is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return AgentState()
        except (OSError, ValueError) as exc:
            log.warning("state file unreadable; starting empty",
                        extra={"path": str(self.path), "err": str(exc)})
            return AgentState()
        return AgentState.from_json(data) if isinstance(data, dict) else AgentState()

    def save(self, state: AgentState) -> None:
        """Write atomically: a temp file in the same dir, fsync, rename, fsync the dir."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        try:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
