"""A job run's host files: output dirs, downloaded input blobs, pinned Hugging Face models.

Everything here is prepared before a container starts, so a missing blob or model fails the
job (or the op) before the client pays for anything.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from nosgrid.core.jobs.fields import HFResource
from nosgrid.core.jobs.meta import DEFAULT_OUTPUTS, NosgridMeta
from nosgrid.core.jobs.spec import RunArgs
from nosgrid.node.resources import HFCache, ResourceError, prepare_hf_resource

BlobFetcher = Callable[[str], Awaitable[bytes]]


def make_output_dirs(job_dir: Path, meta: NosgridMeta) -> dict[str, Path]:
    """One host dir per output path of the job (owned by the job user): target → dir."""
    dirs: dict[str, Path] = {}
    paths = meta.outputs if meta.outputs is not None else list(DEFAULT_OUTPUTS)
    for i, target in enumerate(paths):
        host = job_dir / "outputs" / str(i)
        host.mkdir(parents=True, exist_ok=True)
        (job_dir / "outputs").chmod(0o711)
        if os.geteuid() == 0:
            os.chown(host, 1000, 1000)
        host.chmod(0o700)
        dirs[target] = host
    return dirs


async def prepare_resources(
    args: RunArgs, hf_cache: HFCache | None, pinned: list[Path]
) -> dict[str, Path]:
    """Models and data the op names, fetched (or found cached) and pinned: target → dir.

    Hugging Face resources come through the node's shared, hash-checked cache and are
    mounted read-only; other kinds are refused with a clear reason, before any
    container starts (so the client pays nothing). Each path is appended to ``pinned``
    as soon as it is pinned, so the caller can release it even if a later one fails.
    """
    mounts: dict[str, Path] = {}
    for res in args.resources if isinstance(args.resources, list) else []:
        if not isinstance(res, HFResource):
            kind = getattr(res, "type", type(res).__name__)
            raise ResourceError(f"{kind} resources are not supported by this node yet")
        if hf_cache is None:
            raise ResourceError("this node has no model cache for HF resources")
        path = await prepare_hf_resource(res, hf_cache)
        pinned.append(path)
        mounts[res.target] = path
    return mounts


async def fetch_inputs(
    job_dir: Path, meta: NosgridMeta, fetch_blob: BlobFetcher | None
) -> dict[str, Path]:
    """Download the job's input blobs, check their hashes, store them read-only: path → file."""
    mounts: dict[str, Path] = {}
    if not meta.inputs:
        return mounts
    if fetch_blob is None:
        raise OSError("this runner cannot download input blobs")
    root = job_dir / "inputs"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for i, blob in enumerate(meta.inputs):
        data = await fetch_blob(blob.sha256)
        got = hashlib.sha256(data).hexdigest()
        if got != blob.sha256:
            raise OSError(f"input blob {blob.sha256} arrived with hash {got}")
        host = root / f"{i}-{blob.sha256[:16]}"
        host.write_bytes(data)
        host.chmod(0o444)
        mounts[blob.path] = host
    return mounts
