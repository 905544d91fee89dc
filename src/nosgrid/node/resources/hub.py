"""The sync ``huggingface_hub`` calls, run in threads, and their errors translated.

``huggingface_hub`` is imported inside the functions that call it, so importing this package
does not load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nosgrid.node.resources.errors import (
    HFAccessDenied,
    HFFileNotFound,
    HFHashMismatch,
    HFRepoNotFound,
    HFRevisionNotFound,
    ResourceUnavailable,
)
from nosgrid.node.resources.files import (
    _COMMIT_RE,
    _SHA256_RE,
    RepoFile,
    file_sha256,
    git_blob_sha1,
)


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
