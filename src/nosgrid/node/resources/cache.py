"""``HFCache``: the node-wide, content-addressed model cache (pins, accounting, eviction)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from nosgrid.node.resources.errors import ResourceUnavailable
from nosgrid.node.resources.files import CachedModel, _flock, _try_flock

log = logging.getLogger(__name__)


class HFCache:
    """A node-wide, content-addressed model cache shared by jobs (and by processes).

    Layout under ``root``: ``blobs/<sha256>`` (each file once), ``models/<key>/`` (the
    repo tree of hard links, mounted read-only), ``manifests/<key>.json`` (its mtime is
    the last use), ``refs/`` (revision → commit, for use when the hub is unreachable),
    ``locks/`` and ``pins/`` (``flock`` files: a pin is a shared lock held while a job
    runs, so pins of a crashed process vanish with it).

    Example::

        cache = HFCache(Path("/var/lib/nosgrid/hf-cache"), max_bytes=20 * 2**30)
        path = await prepare_hf_resource(resource, cache)  # fetched (or hit) and pinned
        cache.release(path)                                 # when the job has ended
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = root
        self.max_bytes = max_bytes
        for sub in ("blobs", "models", "manifests", "refs", "locks", "pins", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "models").chmod(0o755)
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._pins: dict[str, list[int]] = {}

    # -- paths

    def model_dir(self, key: str) -> Path:
        """The directory mounted for model ``key``."""
        return self.root / "models" / key

    def _manifest(self, key: str) -> Path:
        return self.root / "manifests" / f"{key}.json"

    def _key_of(self, model_dir: Path) -> str:
        if model_dir.parent != self.root / "models":
            raise ValueError(f"{model_dir} is not a model directory of this cache")
        return model_dir.name

    def _asyncio_lock(self, key: str) -> asyncio.Lock:
        return self._key_locks.setdefault(key, asyncio.Lock())

    # -- pins

    def acquire(self, model_dir: Path) -> None:
        """Pin a cached model so eviction leaves it alone (one pin per call; see ``release``)."""
        key = self._key_of(model_dir)
        fd = os.open(self.root / "pins" / f"{key}.pin", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)  # an evictor holds LOCK_EX only for an instant
        self._pins.setdefault(key, []).append(fd)

    def release(self, model_dir: Path) -> None:
        """Drop one pin taken by ``acquire`` (or by ``prepare_hf_resource``); no-op if none."""
        key = self._key_of(model_dir)
        fds = self._pins.get(key)
        if fds:
            os.close(fds.pop())
            if not fds:
                del self._pins[key]

    def is_pinned(self, key: str) -> bool:
        """Whether any process holds a pin on model ``key``."""
        if self._pins.get(key):
            return True
        fd = _try_flock(self.root / "pins" / f"{key}.pin", shared=False)
        if fd is None:
            return True
        os.close(fd)
        return False

    # -- accounting

    def usage_bytes(self) -> int:
        """Bytes held by the cache's blobs (each file counted once)."""
        total = 0
        with os.scandir(self.root / "blobs") as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
        return total

    def has_blob(self, sha256: str) -> bool:
        """Whether a file with this sha256 is already cached."""
        return (self.root / "blobs" / sha256).is_file()

    def models(self) -> list[CachedModel]:
        """Every complete cached model, least recently used first."""
        out: list[CachedModel] = []
        for manifest in (self.root / "manifests").glob("*.json"):
            try:
                data = json.loads(manifest.read_text())
                last_used = manifest.stat().st_mtime
            except (OSError, ValueError):
                continue
            key = manifest.stem
            out.append(
                CachedModel(
                    key=key,
                    repo=str(data.get("repo", "")),
                    commit=str(data.get("commit", "")),
                    path=self.model_dir(key),
                    size_bytes=int(data.get("size_bytes", 0)),
                    last_used=last_used,
                    pinned=self.is_pinned(key),
                )
            )
        out.sort(key=lambda m: m.last_used)
        return out

    def lookup(self, key: str) -> Path | None:
        """The directory of a complete cached model (marking it used), or None."""
        manifest = self._manifest(key)
        if not manifest.is_file() or not self.model_dir(key).is_dir():
            return None
        os.utime(manifest)
        return self.model_dir(key)

    # -- refs (revision -> commit), for when the hub cannot be reached

    def _ref_path(self, repo: str, revision: str) -> Path:
        name = hashlib.sha256(f"{repo}\n{revision}".encode()).hexdigest()[:32]
        return self.root / "refs" / name

    def remember_ref(self, repo: str, revision: str, commit: str) -> None:
        """Record that ``revision`` of ``repo`` pointed at ``commit``."""
        path = self._ref_path(repo, revision)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}")
        tmp.write_text(commit)
        tmp.replace(path)

    def known_ref(self, repo: str, revision: str) -> str | None:
        """The commit ``revision`` last pointed at, if the cache has seen it."""
        path = self._ref_path(repo, revision)
        return path.read_text().strip() if path.is_file() else None

    # -- eviction

    async def evict(self, needed_bytes: int = 0) -> list[str]:
        """Evict unpinned models, least recently used first, until ``needed_bytes`` more fit.

        Returns the keys evicted. Raises ``ResourceUnavailable`` when pinned models leave no
        room. Example::

            evicted = await cache.evict(needed_bytes=2 * 2**30)
        """
        evicted: list[str] = []
        async with _flock(self.root / "locks" / "cache.lock"):
            if self.usage_bytes() + needed_bytes <= self.max_bytes:
                return evicted
            for model in self.models():
                if self.usage_bytes() + needed_bytes <= self.max_bytes:
                    break
                if self._pins.get(model.key) or self._asyncio_lock(model.key).locked():
                    continue
                key_fd = _try_flock(self.root / "locks" / f"{model.key}.lock", shared=False)
                if key_fd is None:
                    continue  # being fetched right now
                pin_fd = _try_flock(self.root / "pins" / f"{model.key}.pin", shared=False)
                try:
                    if pin_fd is None:
                        continue  # pinned by a running job (maybe in another process)
                    self._manifest(model.key).unlink(missing_ok=True)
                    shutil.rmtree(self.model_dir(model.key), ignore_errors=True)
                    evicted.append(model.key)
                    self._collect_blobs()
                    log.info(
                        "evicted model",
                        extra={"repo": model.repo, "commit": model.commit, "key": model.key},
                    )
                finally:
                    os.close(key_fd)
                    if pin_fd is not None:
                        os.close(pin_fd)
            if self.usage_bytes() + needed_bytes > self.max_bytes:
                raise ResourceUnavailable(
                    f"the model cache has no room for {needed_bytes} more bytes "
                    f"(limit {self.max_bytes}, in use {self.usage_bytes()}, rest pinned by "
                    "running jobs); raise the cache size or wait for jobs to end"
                )
        return evicted

    def _collect_blobs(self) -> None:
        """Delete blobs no model links to any more (only ``blobs/`` holds them)."""
        with os.scandir(self.root / "blobs") as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file() and entry.stat().st_nlink == 1:
                        os.unlink(entry.path)


def local_size(cache: HFCache, sha256: str) -> int:
    """The size of a cached blob, 0 when absent."""
    try:
        return (cache.root / "blobs" / sha256).stat().st_size
    except FileNotFoundError:
        return 0


__all__ = ["HFCache", "local_size"]
