"""The ASGI application factory: routes, error translation, body limits, background loop.

All routes run on the event loop and call the store synchronously: SQLite commits in WAL
mode take well under a millisecond, one process owns the database, and there is no
thread hand-off on the hot path. Long-polls wait on asyncio events, not sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nosgrid import __version__
from nosgrid.coordinator import chain_watcher
from nosgrid.coordinator.api import (
    accounts,
    blobs,
    deployments,
    jobs,
    markets,
    nodes,
    pricing,
    receipts,
    staking,
    system,
    verification,
)
from nosgrid.coordinator.api import dashboard as dashboard_routes
from nosgrid.coordinator.api import services as service_routes
from nosgrid.coordinator.api.openai import GatewayDispatch, openai_error
from nosgrid.coordinator.api.openai import router as openai_router
from nosgrid.coordinator.api.solana import router as solana_router
from nosgrid.coordinator.bootstrap import bootstrap, open_settlement
from nosgrid.coordinator.dashboard import pages as dashboard_pages
from nosgrid.coordinator.gateway import Gateway, GatewaySettings
from nosgrid.coordinator.limits import Budgets
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.errors import InvalidInput, InvalidText, NosgridError, PayloadTooLarge
from nosgrid.core.text import bad_text, may_hold_surrogates
from nosgrid.settlement.backend import SettlementBackend
from nosgrid.store.db import Store

log = logging.getLogger(__name__)


_HTTP_CODES = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large"}


#: the gateway's routes, whose errors are rendered in OpenAI's shape
OPENAI_PREFIX = "/openai/"


def error_response(err: NosgridError, path: str = "") -> JSONResponse:
    """``err`` as the API answers it; under ``/openai/`` in OpenAI's shape, which is what
    the gateway's clients parse (``path``: the request's)."""
    if path.startswith(OPENAI_PREFIX):
        return openai_error(err)
    return JSONResponse({"error": err.to_dict()}, status_code=err.http_status)


def _render_refusal(err: NosgridError, path: str, headers: dict[str, str]) -> ASGIApp:
    """A refusal at the door (``limits.Budgets``), with its extra headers."""
    response = error_response(err, path)
    response.headers.update(headers)
    return response


class BodyLimit:
    """Refuse bodies over the limit (413) before a route reads them; blobs get their own.

    A body without a Content-Length is counted as it streams in. Past the limit the app is
    told the client went away (raising inside ``receive`` would surface as an exception
    group from the http middleware, i.e. a 500), its answer is dropped, and we send 413.
    """

    def __init__(self, app: ASGIApp, max_body: int, max_blob: int) -> None:
        self.app, self.max_body, self.max_blob = app, max_body, max_blob

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_blob if scope["path"].startswith("/v1/blobs/") else self.max_body
        too_large = PayloadTooLarge(f"the body is over {limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(too_large, scope["path"])(scope, receive, send)
            return
        seen, over, started = 0, False, False

        async def capped() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a cut-off body; ours is the 413 below
            started = True
            await send(message)

        try:
            await self.app(scope, capped, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await error_response(too_large, scope["path"])(scope, receive, send)


class TextGuard:
    """Refuse (400 ``invalid_text``) a JSON body with a lone surrogate in any string, and a
    path with a NUL, before a route, the signature check or the store sees them.

    Nothing downstream can encode a lone surrogate (``nosgrid.core.text``): unchecked, it
    failed deep inside (the store, a hash, the answer) as a 500. Most bodies hold no
    ``\\uD8xx`` escape at all, and a byte scan says so without parsing them twice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await error_response(InvalidText("the URL path holds a NUL character (%00); "
                                             "no name or id has one"), scope["path"])(
                scope, receive, send)
            return
        if not _is_json(dict(scope.get("headers") or []).get(b"content-type", b"")):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        last: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                last = message  # the client went away (or BodyLimit cut it off): pass it on
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if last is None and (problem := _surrogate_problem(body)) is not None:
            await error_response(problem, scope["path"])(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return last or {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _is_json(content_type: bytes) -> bool:
    """The media types FastAPI parses as JSON (``application/json``, ``…+json``)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                             and media.endswith(b"+json"))


def _surrogate_problem(body: bytes) -> InvalidText | None:
    if not may_hold_surrogates(body):
        return None
    try:
        tree = json.loads(body)  # bytes: decoded with surrogatepass, as the route would
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers that
    found = bad_text(tree, nul=False)
    if not found:
        return None
    where = [f"{path or 'the body'} {problem}" for path, problem in found]
    return InvalidText("the body holds text that is not valid Unicode: " + "; ".join(where)
                       + "; send UTF-8 text (an escape must not name half of a surrogate "
                       "pair)", path=[path for path, _ in found])


def create_app(settings: CoordinatorSettings, *, store: Store | None = None,
               clock: Callable[[], float] = time.time, background: bool = True,
               settlement: SettlementBackend | None = None,
               gateway: GatewaySettings | None = None) -> FastAPI:
    """Build the coordinator app. ``background=False`` leaves the maintenance loop (and the
    settlement sender) to tests; ``settlement`` is an already opened backend; ``gateway``
    tunes the OpenAI-compatible gateway mounted at ``/openai/v1``."""
    coord = bootstrap(settings, store=store, clock=clock, settlement=settlement)
    gw = Gateway(coord, gateway)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await open_settlement(coord)
        if background:
            await coord.settlement.start(coord.store)
        task = asyncio.create_task(coord.run_maintenance()) if background else None
        watcher = await chain_watcher.start(coord) if background else None
        await gw.start()
        yield
        replica_http = getattr(app.state, "replica_http", None)
        if replica_http is not None:  # the stable URLs' client (api/deployments.py)
            await replica_http.aclose()
        await gw.stop()
        await chain_watcher.stop(watcher)
        await coord.settlement.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="nosgrid coordinator", version=__version__, lifespan=lifespan)
    app.state.coordinator = coord
    app.state.gateway = gw
    for module in (markets, accounts, nodes, jobs, blobs, staking, system, verification,
                   pricing, receipts):
        app.include_router(module.router)
    app.include_router(deployments.router)
    app.include_router(deployments.stable)
    app.include_router(solana_router)
    app.include_router(service_routes.router)
    app.include_router(openai_router)
    app.include_router(dashboard_routes.router)  # the dashboard's figures (JSON)
    app.include_router(dashboard_pages.router)  # the dashboard's pages, at /

    @app.exception_handler(NosgridError)
    async def nosgrid_error(request: Request, exc: NosgridError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            msgs.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return error_response(InvalidInput("invalid request: " + "; ".join(msgs[:10]),
                                           errors=msgs[:50]), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unknown route, wrong method, an unreadable body) get the same
        # error shape as ours; a body cut off by BodyLimit surfaces here as the cause.
        if isinstance(exc.__cause__, NosgridError):
            return error_response(exc.__cause__, request.url.path)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        return error_response(InvalidInput("the client went away before sending the body"),
                              request.url.path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(NosgridError(), request.url.path)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        coord.metrics.requests.labels(request.method, getattr(route, "path", "other"),
                                      str(response.status_code)).inc()
        return response

    app.add_middleware(TextGuard)  # the coordinator's routes; the gateway reads its own
    app.add_middleware(GatewayDispatch)  # inside BodyLimit, before routing and metrics
    app.add_middleware(Budgets, budgets=coord.budgets, render=_render_refusal)
    app.add_middleware(BodyLimit, max_body=settings.max_body_bytes,
                       max_blob=settings.max_blob_bytes)
    return app
