"""Plain values and file helpers of the HF cache: no hub, no cache state.

Kept apart so the cache, the hub calls and resource preparation can share them without
importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from nosgrid.node.resources.errors import ResourceError

DEFAULT_REVISION: Final = "main"
_COMMIT_RE: Final = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_CHUNK: Final = 1024 * 1024
_LOCK_POLL_S: Final = 0.05


# ---------------------------------------------------------------- plain values


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo at a commit, with the hash the hub reports for it."""

    path: str
    size: int | None
    sha256: str | None  # LFS files
    git_sha1: str | None  # the git blob id (every file; the only hash of non-LFS files)


@dataclass(frozen=True)
class CachedModel:
    """One cached (repo, commit, file selection) as ``HFCache.models`` lists it."""

    key: str
    repo: str
    commit: str
    path: Path
    size_bytes: int
    last_used: float
    pinned: bool


def model_key(repo: str, commit: str, files: list[str] | None) -> str:
    """The cache key of a repo at a commit with a file selection (``None``: every file).

    >>> model_key("org/m", "a" * 40, None) == model_key("org/m", "a" * 40, None)
    True
    """
    selection = "*" if files is None else json.dumps(sorted(set(files)))
    digest = hashlib.sha256(f"{repo}\n{commit}\n{selection}".encode()).hexdigest()
    return digest[:32]


def check_repo_path(path: str) -> str:
    """``path`` if it is a safe relative file path inside a repo, else ``ResourceError``.

    >>> check_repo_path("sub/model.gguf")
    'sub/model.gguf'
    """
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
        or "\x00" in path
    ):
        raise ResourceError(f"not a file path inside a repo: {path!r}")
    return path


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file (``sha1("blob <size>\\0" + content)``), as the hub reports it."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- file locks (cross-process)


@contextlib.asynccontextmanager
async def _flock(path: Path, *, shared: bool = False) -> AsyncIterator[int]:
    """Hold ``flock`` on ``path`` (polled, so cancelling the waiter leaks nothing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                await asyncio.sleep(_LOCK_POLL_S)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _try_flock(path: Path, *, shared: bool) -> int | None:
    """An fd holding the lock on ``path`` at once, or None when someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def iter_files(model_dir: Path) -> Iterator[Path]:
    """Every file of a cached model, sorted by path (for listings and checks)."""
    return iter(sorted(p for p in model_dir.rglob("*") if p.is_file()))


__all__ = [
    "DEFAULT_REVISION",
    "CachedModel",
    "RepoFile",
    "check_repo_path",
    "file_sha256",
    "git_blob_sha1",
    "iter_files",
    "model_key",
]
