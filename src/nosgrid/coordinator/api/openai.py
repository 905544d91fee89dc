"""The OpenAI-compatible routes: ``/openai/v1/{models, chat/completions, completions,
embeddings}``, proxied to a healthy replica, metered per delivered token.

A request is authorized by its bearer key, its worst-case cost is reserved against the
key's hold, it goes to the replica with the fewest outstanding requests (once more to
another replica if the first fails before answering), and only the tokens that reached
the client are charged. Streams are relayed event by event in the exact SSE framing the
``openai`` client parses; a stream that breaks ends with an ``{"error": …}`` event.

Errors are ours (:mod:`nosgrid.core.errors`) up to here, where they are rendered in
OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}`` (``OPENAI_ERRORS``);
the coordinator's other routes keep nosgrid's own error shape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from nosgrid.coordinator.gateway.records import Trace
from nosgrid.coordinator.gateway.registry import Replica
from nosgrid.coordinator.gateway.replicas import EMBEDDINGS, model_not_found
from nosgrid.coordinator.gateway.runtime import Gateway
from nosgrid.coordinator.gateway.upstream import UpstreamError, UpstreamResponse
from nosgrid.core.apikeys import KeyClaims
from nosgrid.core.errors import (
    AuthError,
    InvalidApiKey,
    InvalidInput,
    InvalidText,
    ModelCannotServe,
    ModelNotAllowed,
    ModelNotFound,
    ModelUnavailable,
    NosgridError,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    UpstreamFailed,
)
from nosgrid.core.metering import Prices, Reservation
from nosgrid.core.text import bad_text

log = logging.getLogger(__name__)
Kind = Literal["chat", "completions", "embeddings"]
PATHS: dict[Kind, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions",
                          "embeddings": "/v1/embeddings"}
RETRY_STATUSES = frozenset({502, 503, 504})

router = APIRouter(prefix="/openai/v1", tags=["openai"])

#: OpenAI's ``type`` and ``code`` for our errors: the first family the error belongs to
#: decides (``QuotaExceeded`` is a ``PaymentRequired``); any other error is an
#: ``invalid_request_error`` (4xx) or a ``server_error`` (5xx) with our own code. The
#: status is the error's own ``http_status``.
OPENAI_ERRORS: tuple[tuple[type[NosgridError], str, str | None], ...] = (
    (InvalidApiKey, "invalid_request_error", "invalid_api_key"),
    (AuthError, "invalid_request_error", "invalid_api_key"),
    (ModelNotAllowed, "invalid_request_error", "model_not_allowed"),
    (ModelNotFound, "invalid_request_error", "model_not_found"),
    (ModelCannotServe, "invalid_request_error", "model_not_supported"),
    (InvalidInput, "invalid_request_error", None),  # OpenAI names the `param` instead
    (PayloadTooLarge, "invalid_request_error", None),
    (PaymentRequired, "insufficient_quota", "insufficient_quota"),
    (RateLimited, "requests", "rate_limit_exceeded"),
    (ModelUnavailable, "server_error", "model_unavailable"),
    (UpstreamFailed, "server_error", "upstream_error"),
)


def openai_body(err: NosgridError, *, code: str | None = None) -> dict[str, Any]:
    """``err`` in OpenAI's error shape (``code`` overrides the table's)."""
    kind, their_code = next(
        ((k, c) for family, k, c in OPENAI_ERRORS if isinstance(err, family)),
        ("invalid_request_error" if err.http_status < 500 else "server_error", err.code))
    return _openai_shape(err.message, kind, code or their_code, err.details.get("param"))


def openai_error(err: NosgridError, *, code: str | None = None) -> JSONResponse:
    return JSONResponse(openai_body(err, code=code), status_code=err.http_status)


def _openai_shape(message: str, kind: str, code: str | None, param: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _bad(message: str, param: str | None = None) -> InvalidInput:
    return InvalidInput(message, param=param) if param else InvalidInput(message)


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


@router.get("/models")
async def list_models(request: Request) -> Response:
    gw = _gateway(request)
    try:
        claims = gw.authorize(request.headers.get("authorization"), None)
    except NosgridError as err:
        return openai_error(err)
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "nosgrid"}
            for m in gw.models() if claims.allows(m)]
    return Response(json.dumps({"object": "list", "data": data}), media_type="application/json")


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _proxy(request, "chat")


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _proxy(request, "completions")


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await _proxy(request, "embeddings")


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                  include_in_schema=False)
async def unknown(path: str) -> Response:
    return openai_error(NotFound(f"Unknown route /v1/{path}: the gateway serves /v1/models, "
                                 "/v1/chat/completions, /v1/completions and /v1/embeddings"),
                        code="unknown_url")


class GatewayDispatch:
    """ASGI middleware: ``/openai/v1/*`` goes straight to the gateway's routes.

    The coordinator's own routes sit behind FastAPI's routing table and an http middleware
    (metrics); a model request needs neither and every millisecond shows in its latency,
    so it takes this short path (the body limit still applies: install this inside it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = Router(routes=[
            Route("/openai/v1/models", list_models, methods=["GET"]),
            Route("/openai/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/openai/v1/completions", completions, methods=["POST"]),
            Route("/openai/v1/embeddings", embeddings, methods=["POST"]),
            Route("/openai/v1/{path:path}", _unknown,
                  methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/openai/v1/"):
            await self.routes(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _unknown(request: Request) -> Response:
    return await unknown(request.path_params["path"])


# ---------------------------------------------------------------------- request checks


def _parse(raw: bytes, kind: Kind, gw: Gateway) -> tuple[dict[str, Any], str, int, int]:
    """(body, model, prompt bound, max completion tokens) or a 400 in OpenAI's shape."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _bad("The body must be a JSON object.")
    found = bad_text(body, nul=False)
    if found:
        path, problem = found[0]
        raise InvalidText(f"{path or 'the body'} {problem}", param=path)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model")
    field_name = {"chat": "messages", "completions": "prompt", "embeddings": "input"}[kind]
    value = body.get(field_name)
    if kind == "chat":
        if not isinstance(value, list) or not value or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in value):
            raise _bad("'messages' must be a non-empty array of {role, content} objects",
                       "messages")
    elif not isinstance(value, (str, list)) or (isinstance(value, list) and not value):
        raise _bad(f"'{field_name}' must be a string or a non-empty array", field_name)
    if body.get("stream") not in (None, True, False):
        raise _bad("'stream' must be a boolean", "stream")
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
        raise _bad("'n' must be an integer from 1 to 8", "n")
    prompt_bound = len(json.dumps(value).encode()) + 32 * (len(value) if isinstance(value, list)
                                                            else 1)
    if kind == "embeddings":
        return body, model, prompt_bound, 0
    limit = gw.settings.max_tokens_limit
    for name in ("max_completion_tokens", "max_tokens"):
        given = body.get(name)
        if given is not None and (isinstance(given, bool) or not isinstance(given, int)
                                  or not 1 <= given <= limit):
            raise _bad(f"'{name}' must be an integer from 1 to {limit}", name)
    max_tokens = int(body.pop("max_completion_tokens", None) or body.get("max_tokens")
                     or gw.settings.default_max_tokens)
    body["max_tokens"] = max_tokens
    return body, model, prompt_bound, max_tokens * n


ROUTE_NAMES: dict[Kind, str] = {"chat": "chat completions", "completions": "completions",
                                "embeddings": "embeddings"}


def _check_serves(gw: Gateway, model: str, kind: Kind) -> None:
    """A 400 naming the models that do, when ``model``'s engine does not answer ``kind``
    (llama.cpp answers a chat model's embeddings request with a 500)."""
    kinds = gw.serves(model)
    if kinds is None or kind in kinds:
        return
    what = "an embedding model" if kinds == EMBEDDINGS else "a chat model"
    others = [m for m in gw.models() if kind in (gw.serves(m) or {kind})]
    hint = f"; models that do: {', '.join(others)}" if others else ""
    raise ModelCannotServe(f"model {model!r} does not serve {ROUTE_NAMES[kind]}: it is "
                           f"{what}{hint}")


def _prompt_text(body: dict[str, Any], kind: Kind) -> str:
    if kind == "chat":
        parts = []
        for m in body.get("messages") or []:
            content = m.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [str(c.get("text", "")) for c in content if isinstance(c, dict)]
        return "\n".join(parts)
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else "\n".join(str(p) for p in prompt or [])


# ---------------------------------------------------------------------- proxying


async def _proxy(request: Request, kind: Kind) -> Response:
    gw = _gateway(request)
    try:
        claims = gw.authorize(request.headers.get("authorization"), None)
        _known_key(gw, request)
        body, model, prompt_bound, completion_bound = _parse(await request.body(), kind, gw)
        if not claims.allows(model):
            gw.authorize(request.headers.get("authorization"), model)  # raises the 403
        prices = gw.prices(model)
        if model not in gw.models():
            raise model_not_found(model)
        _check_serves(gw, model, kind)
        trace = gw.recorder.start(body, kind) if kind != "embeddings" else None
        res = gw.reserve(claims, prices.cost(prompt_bound, completion_bound))
    except NosgridError as err:
        return openai_error(err)
    try:
        if body.get("stream") and kind != "embeddings":
            return await _stream(gw, claims, res, body, model, kind, prices, trace)
        return await _plain(gw, claims, res, body, model, kind, prices, trace)
    except NosgridError as err:
        gw.meter.cancel(res)
        return openai_error(err)
    except BaseException:
        gw.meter.cancel(res)
        raise


def _known_key(gw: Gateway, request: Request) -> None:
    """A key that verified draws on its own request budget from now on (``limits``)."""
    header = (request.headers.get("authorization") or "")[:256]
    budgets = gw.coord.budgets
    if budgets.multiplier(header, budgets.clock()) is None:
        budgets.remember(header, 1.0)


async def _pick(gw: Gateway, model: str, tried: set[tuple[str, str]]
                ) -> tuple[Replica, float | None]:
    cold = not any(r.healthy for r in gw.registry.for_model(model))
    t0 = time.monotonic()
    replica = await gw.replica_for(model, tried)
    return replica, (time.monotonic() - t0 if cold else None)


def _headers(replica: Replica, cold_s: float | None, trace: Trace | None = None
             ) -> dict[str, str]:
    out = {"x-nosgrid-node": replica.node, "x-nosgrid-job": replica.job_id}
    if cold_s is not None:
        out["x-nosgrid-cold-start-ms"] = str(round(cold_s * 1000))
    if trace is not None:
        out["x-nosgrid-request"] = trace.request_id
        out["x-nosgrid-seed"] = str(trace.sampler.seed)
    return out


def _charge(gw: Gateway, claims: KeyClaims, res: Reservation, trace: Trace | None,
            replica: Replica, model: str, prices: Prices, output: dict[str, Any],
            prompt_tokens: int, completion_tokens: int) -> int:
    """Charge the request and keep its usage record (its hash goes with the charge)."""
    made = None
    if trace is not None and (prompt_tokens or completion_tokens):
        made = gw.recorder.record(
            trace, kid=claims.kid, owner=claims.owner, model=model,
            digest=gw.recorder.digest(gw.deployments.get(model)), node=replica.node,
            job=replica.job_id, output=output, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, at=int(gw.coord.now()))
    record_hash = ""
    if made is not None:
        record_hash = made[0]
        gw.recorder.keep(record_hash, made[1])  # before the charge may write it
    return gw.charge(res, model=model, node=replica.node, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens, prices=prices, record=record_hash)


def _output(answer: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """Choice 0's text and finish reason: the claim an audit replays."""
    choices = answer.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    if kind == "chat":
        text = (first.get("message") or {}).get("content") or ""
    else:
        text = first.get("text") or ""
    return {"text": str(text), "finish_reason": first.get("finish_reason")}


async def _plain(gw: Gateway, claims: KeyClaims, res: Reservation, body: dict[str, Any],
                 model: str, kind: Kind, prices: Prices, trace: Trace | None) -> Response:
    payload = json.dumps(body).encode()
    tried: set[tuple[str, str]] = set()
    last = "no replica answered"
    for _attempt in range(2):
        replica, cold_s = await _pick(gw, model, tried)
        replica.outstanding += 1
        try:
            resp = await gw.upstream.request("POST", replica.endpoint + PATHS[kind], payload,
                                             timeout_s=gw.settings.upstream_timeout_s)
            content = await resp.read()
        except UpstreamError as exc:  # the client has nothing yet: another node may answer
            gw.mark_failed(replica)
            tried.add(replica.key)
            last = f"node {replica.node} failed: {exc}"
            continue
        finally:
            replica.outstanding -= 1
            replica.last_used = time.monotonic()
        if resp.status in RETRY_STATUSES:
            tried.add(replica.key)
            last = f"node {replica.node} answered {resp.status}"
            continue
        if resp.status != 200:
            gw.meter.cancel(res)
            return _upstream_error(resp.status, content)
        try:
            answer = json.loads(content)
            usage = answer.get("usage") or {}
            if kind == "embeddings" and _pool_token_embeddings(answer):
                content = json.dumps(answer).encode()
        except (ValueError, AttributeError, TypeError):
            gw.meter.cancel(res)
            return openai_error(UpstreamFailed(f"node {replica.node} sent a body that is not "
                                               "an OpenAI answer"))
        _charge(gw, claims, res, trace if kind != "embeddings" else None, replica, model,
                prices, _output(answer, kind) if kind != "embeddings" else {},
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        return Response(content, media_type="application/json",
                        headers=_headers(replica, cold_s, trace))
    raise UpstreamFailed(f"the request failed on two nodes; last: {last}")


def _pool_token_embeddings(answer: dict[str, Any]) -> bool:
    """Mean-pool per-token vectors into one per input, as OpenAI's API returns.

    llama.cpp's server answers with one vector per token when the GGUF names no pooling
    (SmolLM2 does not, and the server has no flag for it); clients expect one per input.
    """
    changed = False
    for item in answer.get("data") or []:
        vec = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vec, list) and vec and isinstance(vec[0], list):
            n = len(vec)
            item["embedding"] = [sum(col) / n for col in zip(*vec, strict=True)]
            changed = True
    return changed


def _upstream_error(code: int, content: bytes) -> Response:
    """Pass an engine's own error through when it is OpenAI-shaped, else wrap it. An
    engine's 5xx is the node's failure, so the client gets a 502 (a 500 from the gateway
    would say the gateway broke)."""
    status = code if 400 <= code < 500 else 502
    try:
        body = json.loads(content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            if code == 500 and "validation" in str(err.get("message", "")):
                status = 400  # llama.cpp reports a request it cannot validate as a 500
            return JSONResponse(_openai_shape(
                str(err.get("message") or "error"),
                str(err.get("type") or "invalid_request_error"), err.get("code"),
                err.get("param")), status_code=status)
    except ValueError:
        pass
    text = content[:300].decode("utf-8", "replace")
    return openai_error(UpstreamFailed(f"the node answered {code}: {text}"))


async def _stream(gw: Gateway, claims: KeyClaims, res: Reservation, body: dict[str, Any],
                  model: str, kind: Kind, prices: Prices, trace: Trace | None) -> Response:
    payload = json.dumps(body).encode()
    tried: set[tuple[str, str]] = set()
    last = "no replica answered"
    for _attempt in range(2):
        replica, cold_s = await _pick(gw, model, tried)
        replica.outstanding += 1
        upstream: UpstreamResponse | None = None
        try:
            upstream = await gw.upstream.request("POST", replica.endpoint + PATHS[kind],
                                                 payload,
                                                 timeout_s=gw.settings.upstream_timeout_s)
            if upstream.status in RETRY_STATUSES:
                last = f"node {replica.node} answered {upstream.status}"
                raise _Retry
            if upstream.status != 200:
                content = await upstream.read()
                replica.outstanding -= 1
                gw.meter.cancel(res)
                return _upstream_error(upstream.status, content)
            lines = upstream.lines()
            first = await _first_event(lines)  # the first byte, before we commit to this node
        except (UpstreamError, _Retry) as exc:
            if not isinstance(exc, _Retry):
                gw.mark_failed(replica)
                last = f"node {replica.node} failed: {exc}"
            tried.add(replica.key)
            replica.outstanding -= 1
            if upstream is not None:
                await upstream.aclose()
            continue
        except BaseException:
            replica.outstanding -= 1
            if upstream is not None:
                await upstream.aclose()
            raise
        relay = _Relay(gw, res, replica, upstream, lines, first, body, model, kind, prices,
                       claims, trace)
        return StreamingResponse(relay.events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache",
                                          **_headers(replica, cold_s, trace)})
    raise UpstreamFailed(f"the stream failed on two nodes; last: {last}")


class _Retry(Exception):
    pass


async def _first_event(lines: AsyncIterator[str]) -> list[str]:
    """Read up to and including the first ``data:`` line."""
    got: list[str] = []
    async for line in lines:
        got.append(line)
        if line.startswith("data:"):
            return got
    raise UpstreamError("the stream ended before its first event", before_response=True)


class _Relay:
    """Relays one upstream SSE stream and settles its bill once it ends, however it ends."""

    def __init__(self, gw: Gateway, res: Reservation, replica: Replica,
                 upstream: UpstreamResponse, lines: AsyncIterator[str], first: list[str],
                 body: dict[str, Any], model: str, kind: Kind, prices: Prices,
                 claims: KeyClaims, trace: Trace | None) -> None:
        self.gw, self.res, self.replica, self.upstream = gw, res, replica, upstream
        self.claims, self.trace = claims, trace
        self.text: list[str] = []  # choice 0's text as delivered: the claim an audit replays
        self.finish_reason: str | None = None
        self.lines, self.first, self.body = lines, first, body
        self.model, self.kind, self.prices = model, kind, prices
        self.delivered = 0
        self.usage: dict[str, Any] | None = None
        self.completed = False
        opts = body.get("stream_options")
        self.want_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        self._prompt_count: int | None = None
        self.last_chunk: dict[str, Any] = {}

    async def _count_prompt(self) -> int:
        """Prompt tokens from the engine's tokenizer (llama.cpp streams carry no usage).

        Asked only once generation is over: a request arriving at llama-cpp-python's server
        during a stream interrupts that stream unless it runs with
        ``--interrupt_requests false``.
        """
        if self._prompt_count is not None:
            return self._prompt_count
        self._prompt_count = 0
        with contextlib.suppress(Exception):
            resp = await self.gw.upstream.request(
                "POST", self.replica.endpoint + "/extras/tokenize/count",
                json.dumps({"input": _prompt_text(self.body, self.kind)}).encode(),
                timeout_s=5.0)
            content = await resp.read()
            if resp.status == 200:
                self._prompt_count = int(json.loads(content).get("count") or 0)
        return self._prompt_count

    def _tokens(self, chunk: dict[str, Any]) -> int:
        n = 0
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            piece = None
            if self.kind == "chat":
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("tool_calls"):
                    n += 1
                    piece = delta.get("content")
            elif choice.get("text"):
                n += 1
                piece = choice.get("text")
            if choice.get("index", 0) == 0:
                if isinstance(piece, str):
                    self.text.append(piece)
                if choice.get("finish_reason"):
                    self.finish_reason = str(choice["finish_reason"])
        return n

    async def _all_lines(self) -> AsyncIterator[str]:
        for line in self.first:
            yield line
        async for line in self.lines:
            yield line

    async def events(self) -> AsyncIterator[bytes]:
        try:
            async for line in self._all_lines():
                if not line.startswith("data:"):
                    if line and not line.startswith(":"):
                        yield (line + "\n").encode()
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    self.completed = True
                    if self.want_usage and self.usage is None:
                        yield _sse(await self._usage_chunk())
                    yield b"data: [DONE]\n\n"
                    return  # nothing follows [DONE]; do not wait for the engine to hang up
                tokens = 0
                with contextlib.suppress(ValueError):
                    chunk = json.loads(data)
                    if isinstance(chunk, dict):
                        if isinstance(chunk.get("usage"), dict):
                            self.usage = chunk["usage"]
                        tokens = self._tokens(chunk)
                        self.last_chunk = chunk
                yield f"data: {data}\n\n".encode()
                self.delivered += tokens
            raise UpstreamError("the stream ended without [DONE]", before_response=False)
        except UpstreamError as exc:
            self.gw.mark_failed(self.replica)
            log.warning("stream broke", extra={"node": self.replica.node, "err": repr(exc),
                                               "delivered": self.delivered})
            err = UpstreamFailed(f"the node serving this stream failed after "
                                 f"{self.delivered} tokens; you are charged only for those")
            yield _sse(openai_body(err))
        finally:
            with contextlib.suppress(BaseException):
                await self.upstream.aclose()
            self.replica.outstanding -= 1
            self.replica.last_used = time.monotonic()
            # settle outside this task: a client that went away cancels it
            self.gw.spawn(self._settle())

    async def _usage_chunk(self) -> dict[str, Any]:
        prompt = await self._count_prompt()
        return {"id": self.last_chunk.get("id", ""), "object": "chat.completion.chunk"
                if self.kind == "chat" else "text_completion",
                "created": self.last_chunk.get("created", int(time.time())),
                "model": self.last_chunk.get("model", self.model), "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": self.delivered,
                          "total_tokens": prompt + self.delivered}}

    async def _settle(self) -> None:
        completion = self.delivered
        if self.usage is not None and self.completed:
            prompt = int(self.usage.get("prompt_tokens") or 0)
            completion = int(self.usage.get("completion_tokens") or completion)
        elif self.delivered == 0:
            prompt = 0  # nothing reached the client: nothing to pay
        else:
            prompt = await self._count_prompt()
        trace = self.trace if self.completed else None  # a broken stream is not replayable
        _charge(self.gw, self.claims, self.res, trace, self.replica, self.model, self.prices,
                {"text": "".join(self.text), "finish_reason": self.finish_reason},
                prompt, completion)


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()
