"""Hugging Face model resources: fetch with ``huggingface_hub`` into a node-wide, verified cache.

An op's ``resources: [{"type": "HF", "repo", "revision", "files", "target"}]`` becomes a
host directory the agent bind-mounts read-only at ``target``. Every file is checked
against the hash the hub reports (sha256 for LFS files, the git blob sha1 otherwise),
stored once by sha256 under ``blobs/`` and hard-linked into one directory per
(repo, commit, file selection). Running jobs pin their models; unpinned models are
evicted least-recently-used first when the cache would grow past ``max_bytes``.

Modules (each imports only those above it; import the names from this package)::

    errors     the errors below
    files      plain values (RepoFile, CachedModel), keys, path checks, hashes, flock helpers
    cache      HFCache: the on-disk cache, pins, accounting, eviction
    hub        the sync huggingface_hub calls (run in threads) and their errors translated
    resource   prepare_hf_resource: resolve, fetch what is missing, verify, publish, pin

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

from nosgrid.node.resources.cache import HFCache, local_size
from nosgrid.node.resources.errors import (
    HFAccessDenied,
    HFFileNotFound,
    HFHashMismatch,
    HFRepoNotFound,
    HFRevisionNotFound,
    ResourceError,
    ResourceUnavailable,
)
from nosgrid.node.resources.files import (
    DEFAULT_REVISION,
    CachedModel,
    RepoFile,
    check_repo_path,
    file_sha256,
    git_blob_sha1,
    iter_files,
    model_key,
)
from nosgrid.node.resources.resource import prepare_hf_resource

__all__ = [
    "DEFAULT_REVISION",
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
    "iter_files",
    "local_size",
    "model_key",
    "prepare_hf_resource",
]
