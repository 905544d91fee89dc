"""The errors of HF resources: the client's fault (``ResourceError``) or the node's.

All are ``NosgridError``s raised before the container starts, so the job fails with
``seconds_used=0``; the tree is drawn in the package docstring.
"""

from __future__ import annotations

from nosgrid.core.errors import InvalidInput, Unavailable


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


__all__ = [
    "HFAccessDenied",
    "HFFileNotFound",
    "HFHashMismatch",
    "HFRepoNotFound",
    "HFRevisionNotFound",
    "ResourceError",
    "ResourceUnavailable",
]
