"""The nosgrid SDK: an async client over httpx, and a thin sync wrapper around the same code.

Example::

    from nosgrid.sdk import Client

    with Client("http://127.0.0.1:8700") as c:        # keypair: ~/.config/nosgrid/id.json
        c.faucet("100")
        job = c.post_job(spec={"version": "0.1", "type": "container", "ops": [...]},
                         market="cpu")
        done = c.wait(job["id"])
        print(done["state"], c.balance()["balance_nos"])

Every request is signed with the keypair (see ``nosgrid.core.identity``). Server errors
come back as the matching :class:`~nosgrid.core.errors.NosgridError` subclass.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from solders.keypair import Keypair

from nosgrid.core.errors import NosgridError, Unavailable
from nosgrid.core.money import format_nos
from nosgrid.sdk.wallet import load_keypair, sign_headers

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8700"
#: states in which the client has its answer; "verifying"/"disputed": the result is in and
#: the node's pay is held for an audit (docs/verification.md), the client need not wait
TERMINAL_STATES = frozenset({"settled", "completed", "failed", "timed_out", "cancelled",
                             "verifying", "disputed"})


def default_url() -> str:
    """``$NOSGRID_URL`` or the local default."""
    return os.environ.get("NOSGRID_URL", DEFAULT_URL)


class AsyncClient:
    """Async client for one coordinator, signing as one keypair."""

    def __init__(self, url: str | None = None, keypair: Keypair | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0, clock: Callable[[], float] | None = None) -> None:
        self.url = (url or default_url()).rstrip("/")
        self._keypair = keypair
        self._clock = clock
        self._http = httpx.AsyncClient(base_url=self.url, transport=transport,
                                       timeout=httpx.Timeout(timeout, connect=5.0))

    @property
    def keypair(self) -> Keypair:
        if self._keypair is None:
            self._keypair = load_keypair()
        return self._keypair

    @property
    def pubkey(self) -> str:
        return str(self.keypair.pubkey())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport ---------------------------------------------------------------------

    def _prepare(self, method: str, path: str, params: dict[str, Any] | None,
                 body: bytes, signed: bool) -> tuple[str, dict[str, str]]:
        query = urlencode({k: _q(v) for k, v in (params or {}).items() if v is not None})
        full = f"{path}?{query}" if query else path
        headers = {"content-type": "application/json"} if body else {}
        if signed:
            now = self._clock() if self._clock else None
            headers.update(sign_headers(self.keypair, method, full, body, now=now))
        return full, headers

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      content: bytes | None = None, params: dict[str, Any] | None = None,
                      signed: bool = True) -> Any:
        """Send one request and return its JSON, raising NosgridError on an error answer."""
        body = content if content is not None else (
            b"" if json_body is None else json.dumps(json_body).encode())
        full, headers = self._prepare(method, path, params, body, signed)
        if content is not None:
            headers["content-type"] = "application/octet-stream"
        try:
            resp = await self._http.request(method, full, content=body or None, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the coordinator at {self.url}: {exc}") from None
        return _decode(resp)

    # -- markets & accounts -------------------------------------------------------------

    async def markets(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/v1/markets", signed=False))

    async def market(self, name: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/markets/{name}", signed=False))

    async def create_market(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/markets", json_body=params))

    async def balance(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/accounts/me"))

    async def journal(self, limit: int = 50, before: int | None = None) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/accounts/me/journal",
                                       params={"limit": limit, "before": before}))

    async def faucet(self, amount: str) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/faucet", json_body={"amount": amount}))

    # -- jobs (client side) -------------------------------------------------------------

    async def post_job(self, *, spec: dict[str, Any] | None = None, spec_text: str | None = None,
                       market: str | None = None, timeout: int | None = None,
                       max_price: str | None = None) -> dict[str, Any]:
        body = {"spec": spec, "spec_text": spec_text, "market": market, "timeout": timeout,
                "max_price": max_price}
        return dict(await self.request(
            "POST", "/v1/jobs", json_body={k: v for k, v in body.items() if v is not None}))

    async def job(self, job_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/jobs/{job_id}"))

    async def jobs(self, limit: int = 20, cursor: int | None = None) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/jobs",
                                       params={"limit": limit, "cursor": cursor}))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/v1/jobs/{job_id}/cancel"))

    async def result(self, job_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/jobs/{job_id}/result"))

    async def spec(self, job_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/jobs/{job_id}/spec"))

    async def logs(self, job_id: str, after: int = -1) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/jobs/{job_id}/logs",
                                       params={"after": after}))

    async def follow_logs(self, job_id: str, after: int = -1) -> AsyncIterator[dict[str, Any]]:
        """Yield log chunks as the node sends them, until the job ends."""
        full, headers = self._prepare("GET", f"/v1/jobs/{job_id}/logs",
                                      {"after": after, "follow": True}, b"", True)
        try:
            async with self._http.stream("GET", full, headers=headers,
                                         timeout=httpx.Timeout(None, connect=5.0)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _decode(resp)
                async for line in resp.aiter_lines():
                    if line.strip():
                        item = json.loads(line)
                        if item.get("end"):
                            return
                        yield item
        except httpx.TransportError as exc:
            raise Unavailable(f"lost the log stream from {self.url}: {exc}") from None

    async def wait(self, job_id: str, *, poll_s: float = 0.5,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Poll until the job has its outcome (see ``TERMINAL_STATES``); returns the job."""
        loop = asyncio.get_running_loop()
        end = None if timeout_s is None else loop.time() + timeout_s
        while True:
            job = await self.job(job_id)
            if job["state"] in TERMINAL_STATES:
                return job
            if end is not None and loop.time() > end:
                return job
            await asyncio.sleep(poll_s)

    # -- blobs -------------------------------------------------------------------------

    async def upload_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        await self.request("PUT", f"/v1/blobs/{sha}", content=data)
        return sha

    async def download_blob(self, sha256: str) -> bytes:
        full, headers = self._prepare("GET", f"/v1/blobs/{sha256}", None, b"", True)
        try:
            resp = await self._http.get(full, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the coordinator at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            _decode(resp)
        return resp.content

    # -- node side ---------------------------------------------------------------------

    async def register_node(self, hardware: dict[str, Any],
                            markets: list[str] | None = None) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/nodes/register",
                                       json_body={"hardware": hardware,
                                                  "markets": markets or []}))

    async def heartbeat(self) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/nodes/heartbeat"))

    async def poll(self, wait: float = 25.0) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/nodes/poll", json_body={"wait": wait}))

    async def node(self, node_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/nodes/{node_id}", signed=False))

    async def start_job(self, job_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/v1/jobs/{job_id}/start"))

    async def finish_job(self, job_id: str, *, seconds_used: int | None = None,
                         exit_code: int = 0, outputs: list[dict[str, Any]] | None = None,
                         results: dict[str, Any] | None = None,
                         logs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Report success; ``logs`` are the last log chunks, stored with the result."""
        body = {"seconds_used": seconds_used, "exit_code": exit_code,
                "outputs": outputs or [], "results": results or {}, "logs": logs or []}
        return dict(await self.request("POST", f"/v1/jobs/{job_id}/finish", json_body=body))

    async def fail_job(self, job_id: str, *, reason: str, fault: str = "client",
                       seconds_used: int | None = None, timed_out: bool = False,
                       logs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body = {"reason": reason, "fault": fault, "seconds_used": seconds_used,
                "timed_out": timed_out, "logs": logs or []}
        return dict(await self.request("POST", f"/v1/jobs/{job_id}/fail", json_body=body))

    async def push_logs(self, job_id: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(await self.request("POST", f"/v1/jobs/{job_id}/logs",
                                       json_body={"chunks": chunks}))

    # -- system ------------------------------------------------------------------------

    async def report_service(self, job_id: str, op_id: str, endpoint: str,
                             healthy: bool, model: str | None = None) -> dict[str, Any]:
        """(node) A service op of ``job_id`` answers at ``endpoint`` and is (un)healthy."""
        body: dict[str, Any] = {"op_id": op_id, "endpoint": endpoint, "healthy": healthy}
        if model is not None:
            body["model"] = model
        return dict(await self.request("POST", f"/v1/jobs/{job_id}/service", json_body=body))

    # -- OpenAI gateway: keys, deployments, usage ------------------------------------------

    async def register_key(self, key: str, label: str = "") -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/keys",
                                       json_body={"key": key, "label": label}))

    async def keys(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/keys"))

    async def revoke_key(self, kid: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/v1/keys/{kid}/revoke"))

    async def usage(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/usage"))

    async def deploy(self, model: str, spec: dict[str, Any], *, market: str, min: int = 0,
                     max: int = 1, idle_s: int = 300, prompt_price: int = 1,
                     completion_price: int = 2) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/deployments", json_body={
            "model": model, "spec": spec, "market": market, "min": min, "max": max,
            "idle_s": idle_s, "prompt_price": prompt_price,
            "completion_price": completion_price}))

    async def deployments(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/deployments", signed=False))

    async def undeploy(self, model: str) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"/v1/deployments/{model}"))

    async def health(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/healthz", signed=False))

    async def ledger_verify(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/ledger/verify", signed=False))


def _q(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _decode(resp: httpx.Response) -> Any:
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    if resp.status_code >= 400:
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise NosgridError.from_dict(payload["error"])
        raise NosgridError(f"the coordinator answered HTTP {resp.status_code}")
    return payload


class Client:
    """Blocking wrapper: runs an :class:`AsyncClient` on a private event-loop thread."""

    def __init__(self, url: str | None = None, keypair: Keypair | None = None,
                 **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="nosgrid-sdk")
        self._thread.start()
        self._async = self._call(_make_async(url, keypair, kwargs))

    def _call(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(coro), self._loop).result()

    @property
    def aio(self) -> AsyncClient:
        return self._async

    @property
    def pubkey(self) -> str:
        return self._async.pubkey

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._async, name)
        if name == "follow_logs":
            return lambda *a, **kw: self._iterate(method(*a, **kw))

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(method(*args, **kwargs))

        return call

    def _iterate(self, agen: AsyncIterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        while True:
            try:
                yield self._call(agen.__anext__())
            except StopAsyncIteration:
                return

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make_async(url: str | None, keypair: Keypair | None,
                      kwargs: dict[str, Any]) -> AsyncClient:
    return AsyncClient(url, keypair, **kwargs)


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def nos(amount: int) -> str:
    """Format base units as NOS (re-exported for SDK users)."""
    return format_nos(amount)
