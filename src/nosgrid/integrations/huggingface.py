"""Hugging Face model resources: fetch with ``huggingface_hub`` into a node-wide, verified cache.

An op's ``resources: [{"type": "HF", "repo", "revision", "files", "target"}]`` becomes a
host directory the agent bind-mounts read-only at ``target``. Every file is checked
against the hash the hub reports (sha256 for LFS files, the git blob sha1 otherwise),
stored once by sha256 under ``blobs/`` and hard-linked into one directory per
(repo, commit, file selection). Running jobs pin their models; unpinned models are
evicted least-recently-used first when the cache would grow past ``max_bytes``.

Errors (all ``NosgridError``; raised before the container starts, so the job fails with
``seconds_used=0`` and costs the client nothing)::

    InvalidInput
    └── ResourceError              400 resource_error      the client's resource is wrong
        ├── HFRepoNotFound         404 hf_repo_not_found   no such repo (or private, no token)
        ├── HFAccessDenied         403 hf_access_denied    gated repo, token lacks access
        ├── HFRevisionNotFound     404 hf_revision_not_found
        ├── HFFileNotFound         404 hf_file_not_found   a name in ``files`` is not in the repo
        └── HFHashMismatch         422 hf_hash_mismatch    bytes differ from the hub's hash
    Unavailable
    └── ResourceUnavailable        503 resource_unavailable  hub down or cache full (node)

Example::

    cache = HFCache(Path("/var/lib/nosgrid/hf-cache"), max_bytes=50 * 2**30)
    path = await prepare_hf_resource(op.args.resources[0], cache)  # pinned
    try:
        ...  # Mount(path, resource.target, read_only=True)
    finally:
        cache.release(path)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from nosgrid.core.errors import InvalidInput, Unavailable
from nosgrid.core.jobs.fields import HFResource

log = logging.getLogger(__name__)

DEFAULT_REVISION: Final = "main"
_COMMIT_RE: Final = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_CHUNK: Final = 1024 * 1024
_LOCK_POLL_S: Final = 0.05


# ---------------------------------------------------------------- errors


class ResourceError(InvalidInput):
    """A job's resource cannot be prepared because of what the job asked for."""

    code = "resource_error"
    default_message = "A resource of the job could not be prepared; check its repo and files."


class HFRepoNotFound(ResourceError):
    """The repo does not exist, or is private and no usable token was given."""

    code = "hf_repo_not_found"
    http_status = 404


class HFAccessDenied(ResourceError):
    """The repo is gated and the token (``accessToken`` / ``HF_TOKEN``) has no access."""

    code = "hf_access_denied"
    http_status = 403


class HFRevisionNotFound(ResourceError):
    """The repo has no such branch, tag or commit."""

    code = "hf_revision_not_found"
    http_status = 404


class HFFileNotFound(ResourceError):
    """A path listed in ``files`` is not in the repo at that revision."""

    code = "hf_file_not_found"
    http_status = 404


class HFHashMismatch(ResourceError):
    """A downloaded file's hash differs from the one the hub reports; nothing was kept."""

    code = "hf_hash_mismatch"
    http_status = 422


class ResourceUnavailable(Unavailable):
    """The hub cannot be reached or the node's model cache is full (not the client's fault)."""

    code = "resource_unavailable"
    default_message = "The model hub or the node's model cache is unavailable; try again later."


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


# ---------------------------------------------------------------- the cache


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


# ---------------------------------------------------------------- the hub (sync, run in threads)


@dataclass(frozen=True)
class _HubRepo:
    commit: str
    files: tuple[RepoFile, ...]


def _translate(exc: Exception, repo: str, revision: str) -> Exception:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, LocalEntryNotFoundError):  # the hub could not be reached
        return ResourceUnavailable(f"the model hub could not be reached for {repo!r}: {exc}")
    if isinstance(exc, GatedRepoError):
        return HFAccessDenied(
            f"repo {repo!r} is gated: accept its terms and pass a token with access "
            "('accessToken' in the resource or HF_TOKEN on the node)"
        )
    if isinstance(exc, RepositoryNotFoundError | HFValidationError):
        return HFRepoNotFound(
            f"Hugging Face repo {repo!r} was not found (or is private and no token with "
            "access was given); check 'repo' and 'accessToken'"
        )
    if isinstance(exc, RevisionNotFoundError):
        return HFRevisionNotFound(
            f"repo {repo!r} has no revision {revision!r}; use a branch, tag or commit that exists"
        )
    if isinstance(exc, EntryNotFoundError):
        return HFFileNotFound(f"a requested file is not in {repo!r} at {revision!r}")
    return ResourceUnavailable(f"the model hub could not be reached for {repo!r}: {exc}")


def _hub_errors() -> tuple[type[Exception], ...]:
    import httpx2
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    return (OSError, httpx2.HTTPError, EntryNotFoundError, HFValidationError)


def _repo_info(repo: str, revision: str, endpoint: str | None, token: str | None) -> _HubRepo:
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(
            repo, revision=revision, files_metadata=True
        )
    except _hub_errors() as exc:
        raise _translate(exc, repo, revision) from exc
    if not info.sha or not _COMMIT_RE.match(info.sha):
        raise ResourceUnavailable(f"the hub gave no commit for {repo!r} at {revision!r}")
    files = tuple(
        RepoFile(
            path=s.rfilename,
            size=s.lfs.size if s.lfs is not None else s.size,
            sha256=s.lfs.sha256 if s.lfs is not None else None,
            git_sha1=s.blob_id,
        )
        for s in info.siblings or ()
    )
    return _HubRepo(commit=info.sha, files=files)


def _etag_hash(
    repo: str, path: str, commit: str, endpoint: str | None, token: str | None
) -> tuple[str | None, str | None]:
    """(sha256, git sha1) from the ``resolve`` ETag, for hubs whose listing lacks hashes."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        meta = get_hf_file_metadata(
            hf_hub_url(repo, path, revision=commit, endpoint=endpoint), token=token
        )
    except _hub_errors() as exc:
        raise _translate(exc, repo, commit) from exc
    etag = (meta.etag or "").strip('"').lower()
    if _SHA256_RE.match(etag):
        return etag, None
    if _COMMIT_RE.match(etag):
        return None, etag
    return None, None


def _download(
    repo: str, file: RepoFile, commit: str, endpoint: str | None, token: str | None, into: Path
) -> Path:
    """Download one file into ``into`` (unverified; see ``_verify``)."""
    from huggingface_hub import hf_hub_download

    try:
        local = hf_hub_download(
            repo_id=repo,
            filename=file.path,
            revision=commit,
            local_dir=into,
            endpoint=endpoint,
            token=token,
        )
    except _hub_errors() as exc:
        raise _translate(exc, repo, commit) from exc
    return Path(str(local))


def _verify(file: RepoFile, path: Path, repo: str) -> str:
    """The file's sha256 after checking it against the hub's hash; ``HFHashMismatch`` if not."""
    actual_sha256 = file_sha256(path)
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise HFHashMismatch(
            f"{repo}/{file.path}: got {size} bytes, the hub says {file.size}; nothing was kept"
        )
    if file.sha256 is not None:
        if actual_sha256 != file.sha256.lower():
            raise HFHashMismatch(
                f"{repo}/{file.path}: sha256 {actual_sha256} differs from the hub's "
                f"{file.sha256}; nothing was kept"
            )
    elif file.git_sha1 is not None:
        actual = git_blob_sha1(path)
        if actual != file.git_sha1.lower():
            raise HFHashMismatch(
                f"{repo}/{file.path}: git blob id {actual} differs from the hub's "
                f"{file.git_sha1}; nothing was kept"
            )
    else:
        raise HFHashMismatch(f"{repo}/{file.path}: the hub reports no hash to check it against")
    return actual_sha256


# ---------------------------------------------------------------- preparing a resource


def _endpoint(explicit: str | None) -> str | None:
    # Read at call time: huggingface_hub reads HF_ENDPOINT once, at import.
    value = explicit or os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


async def _resolve(
    resource: HFResource, cache: HFCache, endpoint: str | None, token: str | None
) -> _HubRepo | str:
    """The hub's view of the repo, or (hub unreachable, revision seen before) a cached commit."""
    revision = resource.revision or DEFAULT_REVISION
    try:
        return await asyncio.to_thread(_repo_info, resource.repo, revision, endpoint, token)
    except ResourceUnavailable:
        commit = cache.known_ref(resource.repo, revision)
        if commit is None:
            raise
        log.warning(
            "model hub unreachable; using the cached commit",
            extra={"repo": resource.repo, "revision": revision, "commit": commit},
        )
        return commit


def _selected(hub: _HubRepo, resource: HFResource) -> list[RepoFile]:
    by_path = {f.path: f for f in hub.files}
    for f in hub.files:
        check_repo_path(f.path)
    if resource.files is None:
        return list(hub.files)
    missing = [p for p in resource.files if check_repo_path(p) not in by_path]
    if missing:
        raise HFFileNotFound(
            f"{resource.repo} at {resource.revision or DEFAULT_REVISION} has no "
            f"{', '.join(repr(p) for p in missing)}; check 'files'"
        )
    return [by_path[p] for p in dict.fromkeys(resource.files)]


async def prepare_hf_resource(
    resource: HFResource | Mapping[str, Any],
    cache: HFCache,
    *,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """Fetch (or find cached) an HF resource and return its directory, pinned.

    The directory holds the selected repo files at their repo paths, verified against the
    hub's hashes; mount it read-only at ``resource.target`` and call
    ``cache.release(path)`` when the job ends. ``endpoint`` defaults to ``HF_ENDPOINT``,
    the token to the resource's ``accessToken``, then ``HF_TOKEN``. Concurrent calls for
    the same model (in this process or another) download it once. Raises a
    ``ResourceError`` subclass for a missing repo, revision or file or a hash mismatch,
    and ``ResourceUnavailable`` when the hub cannot be reached (and nothing is cached).

    Example::

        res = HFResource.model_validate({"type": "HF", "repo": "org/model",
                                         "files": ["model.gguf"], "target": "/models"})
        path = await prepare_hf_resource(res, cache)
        spec = ContainerSpec(..., mounts=(Mount(path, res.target, read_only=True),))
    """
    if not isinstance(resource, HFResource):
        resource = HFResource.model_validate(resource)
    endpoint = _endpoint(endpoint)
    token = token or resource.access_token or None  # None: huggingface_hub reads HF_TOKEN
    revision = resource.revision or DEFAULT_REVISION
    hub = await _resolve(resource, cache, endpoint, token)
    commit = hub if isinstance(hub, str) else hub.commit
    key = model_key(resource.repo, commit, resource.files)
    async with cache._asyncio_lock(key), _flock(cache.root / "locks" / f"{key}.lock"):
        found = cache.lookup(key)
        if found is not None:
            log.info("model cache hit", extra={"repo": resource.repo, "commit": commit})
        elif isinstance(hub, str):
            raise ResourceUnavailable(
                f"the model hub could not be reached and {resource.repo} is not cached"
            )
        else:
            found = await _fetch(resource, hub, key, cache, endpoint, token)
        cache.remember_ref(resource.repo, revision, commit)
        cache.acquire(found)
    return found


async def _fetch(
    resource: HFResource,
    hub: _HubRepo,
    key: str,
    cache: HFCache,
    endpoint: str | None,
    token: str | None,
) -> Path:
    """Download what is missing, verify, and publish ``models/<key>`` atomically."""
    files = _selected(hub, resource)
    needed = sum(f.size or 0 for f in files if not (f.sha256 and cache.has_blob(f.sha256)))
    await cache.evict(needed)
    started = time.monotonic()
    staging = cache.root / "tmp" / uuid.uuid4().hex
    staging.mkdir()
    downloaded = 0
    try:
        verified: list[tuple[RepoFile, Path, str]] = []
        for file in files:
            if file.sha256 is None and file.git_sha1 is None:
                sha256, git_sha1 = await asyncio.to_thread(
                    _etag_hash, resource.repo, file.path, hub.commit, endpoint, token
                )
                file = RepoFile(file.path, file.size, sha256, git_sha1)
            if file.sha256 and cache.has_blob(file.sha256):
                verified.append((file, cache.root / "blobs" / file.sha256, file.sha256))
                continue
            local = await asyncio.to_thread(
                _download, resource.repo, file, hub.commit, endpoint, token, staging / "dl"
            )
            sha256 = await asyncio.to_thread(_verify, file, local, resource.repo)
            verified.append((file, local, sha256))
            downloaded += local.stat().st_size
        async with _flock(cache.root / "locks" / "cache.lock"):
            tree = staging / "tree"
            tree.mkdir()
            for file, local, sha256 in verified:
                blob = cache.root / "blobs" / sha256
                if not blob.is_file():
                    local.chmod(0o444)
                    os.replace(local, blob)
                dest = tree / file.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(blob, dest)
            for directory in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
                directory.chmod(0o755)
            target = cache.model_dir(key)
            if target.exists():  # a leftover of a crash between rename and manifest
                shutil.rmtree(target)
            os.replace(tree, target)
            manifest = {
                "repo": resource.repo,
                "commit": hub.commit,
                "files": [f.path for f, _, _ in verified],
                "size_bytes": sum(local_size(cache, sha) for _, _, sha in verified),
                "fetched_at": time.time(),
            }
            cache._manifest(key).write_text(json.dumps(manifest))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ResourceUnavailable(
                f"the node's disk is full while fetching {resource.repo}"
            ) from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "model fetched",
        extra={
            "repo": resource.repo,
            "commit": hub.commit,
            "files": len(files),
            "bytes_downloaded": downloaded,
            "seconds": round(time.monotonic() - started, 2),
        },
    )
    return cache.model_dir(key)


def local_size(cache: HFCache, sha256: str) -> int:
    """The size of a cached blob, 0 when absent."""
    try:
        return (cache.root / "blobs" / sha256).stat().st_size
    except FileNotFoundError:
        return 0


def iter_files(model_dir: Path) -> Iterator[Path]:
    """Every file of a cached model, sorted by path (for listings and checks)."""
    return iter(sorted(p for p in model_dir.rglob("*") if p.is_file()))


__all__ = [
    "CachedModel",
    "HFAccessDenied",
    "HFCache",
    "HFFileNotFound",
    "HFHashMismatch",
    "HFRepoNotFound",
    "HFRevisionNotFound",
    "RepoFile",
    "ResourceError",
    "ResourceUnavailable",
    "check_repo_path",
    "file_sha256",
    "git_blob_sha1",
    "model_key",
    "prepare_hf_resource",
]
