"""A small Hugging Face-compatible file server on 127.0.0.1 for tests (``HF_ENDPOINT``).

It answers what ``huggingface_hub`` asks: ``GET /api/models/{repo}[/revision/{rev}]``
(siblings with ``blobId``, ``size`` and ``lfs.sha256`` when ``?blobs=true``), and
``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``,
``X-Linked-Etag``/``X-Linked-Size`` (LFS files), ``Content-Length`` and ``Range``.
Errors carry the ``X-Error-Code`` the client maps to typed errors (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``). Every request is recorded in ``requests``.

Example::

    with FakeHub() as hub:
        hub.add_repo("org/tiny", {"config.json": b"{}", "w.bin": b"..."}, lfs={"w.bin"})
        os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_CHUNK = 1024 * 1024


@dataclass
class HubFile:
    """One file of a commit: its bytes (or a path to them), whether it is LFS, what is served."""

    path: str
    source: bytes | Path
    lfs: bool = False
    served: bytes | None = None  # set by ``tamper``: bytes served instead of ``source``
    _sha256: str | None = None
    _sha1: str | None = None

    def read(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else self.source.read_bytes()

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    def _chunks(self) -> Iterable[bytes]:
        if isinstance(self.source, bytes):
            yield self.source
            return
        with self.source.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            digest = hashlib.sha256()
            for chunk in self._chunks():
                digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    @property
    def git_sha1(self) -> str:
        if self._sha1 is None:
            digest = hashlib.sha1(f"blob {self.size}\0".encode(), usedforsecurity=False)
            for chunk in self._chunks():
                digest.update(chunk)
            self._sha1 = digest.hexdigest()
        return self._sha1

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1

    def sibling(self, with_metadata: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"rfilename": self.path}
        if with_metadata:
            entry["size"] = self.size
            if self.lfs:  # the git blob is the LFS pointer; its id is not the content's
                pointer = f"oid sha256:{self.sha256}\nsize {self.size}\n"
                entry["blobId"] = hashlib.sha1(pointer.encode(), usedforsecurity=False).hexdigest()
                entry["lfs"] = {"size": self.size, "sha256": self.sha256, "pointerSize": 134}
            else:
                entry["blobId"] = self.git_sha1
        return entry


@dataclass
class HubRepo:
    """A repo: refs (branch/tag → commit) and the files of each commit."""

    repo_id: str
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


def _commit_id(repo_id: str, files: Mapping[str, HubFile], n: int) -> str:
    digest = hashlib.sha1(f"{repo_id}:{n}".encode(), usedforsecurity=False)
    for path in sorted(files):
        digest.update(f"{path}:{files[path].etag}".encode())
    return digest.hexdigest()


class FakeHub:
    """The server: add repos, tamper with files, read the request log; a context manager."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.delay_s = 0.0  # slow every file GET down (to make concurrent fetches overlap)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- content

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        lfs: Iterable[str] = (),
        branch: str = "main",
    ) -> str:
        """Add (or add a commit to) a repo; returns the new commit id, which ``branch`` names."""
        lfs_set = set(lfs)
        repo = self.repos.setdefault(repo_id, HubRepo(repo_id))
        tree = {p: HubFile(p, src, lfs=p in lfs_set) for p, src in files.items()}
        commit = _commit_id(repo_id, tree, len(repo.commits))
        repo.commits[commit] = tree
        repo.refs[branch] = commit
        return commit

    def tamper(self, repo_id: str, path: str, served: bytes, revision: str = "main") -> None:
        """Serve ``served`` for ``path`` while the metadata keeps the original hashes."""
        repo = self.repos[repo_id]
        commit = repo.resolve(revision)
        assert commit is not None
        repo.commits[commit][path].served = served

    def file_gets(self, repo_id: str, path: str) -> int:
        """How many GETs (not HEADs) fetched ``path`` of ``repo_id`` so far."""
        suffix = f"/{path}"
        with self._lock:
            return sum(
                1
                for method, url in self.requests
                if method == "GET"
                and url.startswith(f"/{repo_id}/resolve/")
                and url.endswith(suffix)
            )

    # -- HTTP

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append((request.method, request.url.path))

    def _repo(self, request: Request) -> HubRepo | Response:
        repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        return repo

    async def model_info(self, request: Request) -> Response:
        self._record(request)
        repo = self._repo(request)
        if isinstance(repo, Response):
            return repo
        revision = request.path_params.get("rev", "main")
        commit = repo.resolve(revision)
        if commit is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
        tree = repo.commits[commit]
        return JSONResponse(
            {
                "_id": commit[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit,
                "private": False,
                "gated": False,
                "disabled": False,
                "tags": [],
                "siblings": [tree[p].sibling(blobs) for p in sorted(tree)],
            }
        )

    async def resolve(self, request: Request) -> Response:
        self._record(request)
        repo = self._repo(request)
        if isinstance(repo, Response):
            return repo
        revision = request.path_params["rev"]
        commit = repo.resolve(revision)
        if commit is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        hub_file = repo.commits[commit].get(request.path_params["path"])
        if hub_file is None:
            return _error(404, "EntryNotFound", "Entry not found", commit=commit)
        body_source = hub_file.served if hub_file.served is not None else hub_file.source
        total = len(body_source) if isinstance(body_source, bytes) else body_source.stat().st_size
        headers = {
            "ETag": f'"{hub_file.etag}"',
            "X-Repo-Commit": commit,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if hub_file.lfs:
            headers["X-Linked-Etag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Size"] = str(hub_file.size)
        start, end, status = 0, total - 1, 200
        range_header = request.headers.get("range")
        if range_header and range_header.startswith("bytes="):
            first, _, last = range_header[6:].partition("-")
            start = int(first or 0)
            end = int(last) if last else total - 1
            if start >= total:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{total}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        headers["Content-Length"] = str(end - start + 1)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(
            _stream(body_source, start, end, self.delay_s), status_code=status, headers=headers
        )

    def app(self) -> Starlette:
        repo = "/{org}/{name}"
        return Starlette(
            routes=[
                Route(f"/api/models{repo}", self.model_info, methods=["GET"]),
                Route(f"/api/models{repo}/revision/{{rev}}", self.model_info, methods=["GET"]),
                Route(
                    f"{repo}/resolve/{{rev}}/{{path:path}}", self.resolve, methods=["GET", "HEAD"]
                ),
            ]
        )

    # -- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake hub did not start in 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error(status: int, code: str, message: str, *, commit: str | None = None) -> Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _stream(
    source: bytes | Path, start: int, end: int, delay_s: float
) -> AsyncIterator[bytes]:
    if delay_s:
        await asyncio.sleep(delay_s)
    if isinstance(source, bytes):
        yield source[start : end + 1]
        return
    with source.open("rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
