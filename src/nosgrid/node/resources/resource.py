"""Preparing an HF resource: resolve the revision, fetch what is missing, pin the model."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nosgrid.core.jobs.fields import HFResource
from nosgrid.node.resources.cache import HFCache, local_size
from nosgrid.node.resources.errors import HFFileNotFound, ResourceUnavailable
from nosgrid.node.resources.files import (
    DEFAULT_REVISION,
    RepoFile,
    _flock,
    check_repo_path,
    model_key,
)
from nosgrid.node.resources.hub import (
    _download,
    _etag_hash,
    _HubRepo,
    _repo_info,
    _verify,
)

log = logging.getLogger(__name__)


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


__all__ = ["prepare_hf_resource"]
