"""What a container gives back: its log lines, podman's start errors, its output files.

Logs are forwarded line by line within a byte budget (the rest is drained and counted, so a
flooding job cannot stall podman); the last stderr lines tell a container that never started
apart from one that failed; output files are copied out of the work dir without ever
following a symlink. Kept apart from the runtime that spawns and reaps podman.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final

from nosgrid.node.executor.base import ContainerSpec, LogCallback, LogStream

log = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 64 * 1024
_READ_CHUNK: Final = 64 * 1024


@dataclass
class LogState:
    """A container's log byte budget, shared by its stdout and stderr readers."""

    limit: int
    forwarded: int = 0
    truncated: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    callback_failed: bool = False


async def read_stream(
    stream: asyncio.StreamReader,
    name: LogStream,
    logs: LogState,
    on_log: LogCallback | None,
    tail: deque[str] | None,
) -> None:
    """Forward ``stream`` line by line within the byte budget; drain (and count) the rest."""
    pending = b""
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            break
        logs.counts[name] += len(chunk)
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        while len(pending) > MAX_LINE_BYTES:  # a line without end is cut into pieces
            lines.append(pending[:MAX_LINE_BYTES])
            pending = pending[MAX_LINE_BYTES:]
        for line in lines:
            emit(line, name, logs, on_log, tail)
    if pending:
        emit(pending, name, logs, on_log, tail)


def emit(
    line: bytes,
    name: LogStream,
    logs: LogState,
    on_log: LogCallback | None,
    tail: deque[str] | None,
) -> None:
    text = line.decode(errors="replace")
    if tail is not None:
        tail.append(text[:2000])
    if logs.truncated:
        return
    if logs.forwarded + len(line) + 1 > logs.limit:
        logs.truncated = True
        return
    logs.forwarded += len(line) + 1
    if on_log is None or logs.callback_failed:
        return
    try:
        on_log(name, text)
    except Exception:
        logs.callback_failed = True
        log.exception("log callback failed; further lines are not forwarded")


def podman_error(tail: deque[str]) -> bool:
    return bool(tail) and tail[-1].startswith("Error: ")


def start_failure(line: str, spec: ContainerSpec) -> str:
    msg = line.removeprefix("Error: ").strip()
    if "image not known" in msg or "no such image" in msg.lower():
        return f"image {spec.image} is not on this node (nothing is pulled): {msg}"
    if "executable file not found" in msg or "no such file or directory" in msg:
        return f"the command was not found in the image: {msg}"
    return f"the container failed to start: {msg}"


def collect_outputs(spec: ContainerSpec, root: Path) -> tuple[tuple[Path, ...], bool]:
    """Copy regular files matching the spec's output globs out of the work dir, safely.

    Symlinks are never followed (a job could point one at a host file) and the total size
    is capped by ``output_limit_bytes``; ``root`` is the container's host work dir.
    """
    if not spec.outputs or spec.output_dir is None:
        return (), False
    dest_root = spec.output_dir
    dest_root.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    total = 0
    truncated = False
    seen: set[Path] = set()
    for pattern in spec.outputs:
        if PurePosixPath(pattern).is_absolute() or ".." in PurePosixPath(pattern).parts:
            continue
        for path in sorted(root.glob(pattern)):
            files = [path] if not path.is_dir() or path.is_symlink() else sorted(path.rglob("*"))
            for file in files:
                if file in seen:
                    continue
                seen.add(file)
                rel = file.relative_to(root)
                inside = [p for p in [file, *file.parents] if root in p.parents]
                if any(p.is_symlink() for p in inside):
                    continue
                try:
                    fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                with os.fdopen(fd, "rb") as src:
                    st = os.fstat(src.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    if total + st.st_size > spec.output_limit_bytes:
                        truncated = True
                        continue
                    target = dest_root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1024 * 1024)
                    total += st.st_size
                    copied.append(target)
    return tuple(copied), truncated
