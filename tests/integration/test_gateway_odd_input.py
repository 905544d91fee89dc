"""Every gateway route answers bad and odd input with an OpenAI-shaped 4xx, never a 500.

A 5xx from the gateway is either the node's failure (502 ``upstream_error``, 503
``model_unavailable``) or a bug. The routes get hypothesis bodies (any JSON, fields of the
wrong type, text with lone surrogates, NULs and very long strings, sent escaped or as raw
bytes, with or without a JSON content type) under a valid key, a malformed key and none;
a model whose engine does not serve the route (embeddings from a chat model: llama.cpp
answers that with a 500) gets a 400 naming the models that do, before the node is asked.

Examples per route: ``NOSGRID_GATEWAY_FUZZ_EXAMPLES`` (default 200).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
from gateway_fixtures import HW, GatewayWorld, gateway_world
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair

from nosgrid.sdk.client import AsyncClient

EXAMPLES = int(os.environ.get("NOSGRID_GATEWAY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
ROUTES = ("chat/completions", "completions", "embeddings")
LLAMA_CHAT = ["python3", "-m", "llama_cpp.server", "--model_alias", "chatty"]
LLAMA_EMBED = [*LLAMA_CHAT[:-1], "embedder", "--embedding", "true"]
#: the upstream's failures, which are not the gateway's
UPSTREAM_CODES = {"upstream_error", "model_unavailable"}

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None), max_size=10).map(lambda s: s + "\ud800"),
    st.just("a\x00b"), st.just("x" * 70_000), st.just("\udfff"),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant"]) | odd_text},
    optional={"content": json_values}), max_size=3) | json_values
bodies = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["fake", "chatty", "embedder", "nope"]) | odd_text | json_values,
    "messages": messages, "prompt": json_values, "input": json_values,
    "max_tokens": st.integers(-5, 10**9) | json_values,
    "max_completion_tokens": json_values, "n": st.integers(-1, 20) | json_values,
    "stream": json_values, "stream_options": json_values, "temperature": json_values,
    "seed": json_values, "user": odd_text,
}) | json_values


def _encode(body: Any, raw: bool) -> bytes:
    """JSON with surrogates escaped (``\\ud800``, what a client's encoder writes), or as
    the raw bytes a careless one sends."""
    text = json.dumps(body, allow_nan=True)
    return text.encode("utf-8", "surrogatepass") if not raw else json.dumps(
        body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _check(reply: httpx.Response) -> None:
    if reply.status_code < 500:
        if reply.status_code >= 400:
            error = reply.json()["error"]
            assert error["message"] and error["type"], reply.text
        return
    code = reply.json()["error"]["code"]
    assert reply.status_code != 500 and code in UPSTREAM_CODES, reply.text


def _fuzz(w: GatewayWorld, key: str) -> None:
    auth: dict[str, bytes | None] = {"good": f"Bearer {key}".encode(),
                                     "bad": b"Bearer nos-key-\xff", "none": None}

    with httpx.Client(base_url=w.url + "/openai/v1", timeout=30) as http:
        @FUZZ
        @given(route=st.sampled_from(ROUTES), body=bodies, raw=st.booleans(),
               who=st.sampled_from(sorted(auth)), json_type=st.booleans())
        @example(route="embeddings", body={"model": "chatty", "input": "hi"}, raw=False,
                 who="good", json_type=True)
        @example(route="chat/completions", body={"model": "m\ud800", "messages": [
            {"role": "user", "content": "hi"}]}, raw=False, who="good", json_type=True)
        def one(route: str, body: Any, raw: bool, who: str, json_type: bool) -> None:
            headers: dict[str, str | bytes] = {
                "content-type": "application/json" if json_type else "text/plain"}
            if (value := auth[who]) is not None:
                headers["authorization"] = value
            _check(http.post("/" + route, content=_encode(body, raw), headers=headers))

        one()
        for path in ("models", "models/fake", "nothing/here", "chat/completions/x"):
            for header in auth.values():
                _check(http.get("/" + path, headers={"authorization": header} if header
                                else {}))


async def _service(w: GatewayWorld, cmd: list[str]) -> str:
    spec = {"version": "0.1", "type": "container", "ops": [{
        "type": "container/run", "id": "llm", "args": {
            "image": "localhost/nosgrid-busybox:test", "cmd": cmd,
            "expose": [{"port": 8000, "type": "api"}]}}]}
    async with AsyncClient(w.url, Keypair()) as node:  # a node of its own for each
        await node.register_node(HW, ["cpu"])
        job = await w.alice.post_job(spec=spec, market="cpu")
        polled = await node.poll(wait=1)
        assert polled.job is not None and polled.job.id == job.id
        await node.start_job(job.id)
        await node.report_service(job.id, "llm", w.engine_url, True)  # the model: its alias
    return str(job.id)


async def test_no_route_answers_500_to_odd_input(tmp_path: Path) -> None:
    async with gateway_world(tmp_path) as w:
        await w.add_replica(w.node)
        await _service(w, LLAMA_CHAT)
        await asyncio.to_thread(_fuzz, w, w.key())


async def test_a_route_the_model_does_not_serve_is_a_400_naming_those_that_do(
        tmp_path: Path) -> None:
    async with gateway_world(tmp_path) as w:
        await _service(w, LLAMA_CHAT)
        await _service(w, LLAMA_EMBED)
        headers = {"authorization": f"Bearer {w.key()}"}
        async with httpx.AsyncClient(base_url=w.url + "/openai/v1", headers=headers) as http:
            calls = w.engine.calls
            emb = await http.post("/embeddings", json={"model": "chatty", "input": "hi"})
            chat = await http.post("/chat/completions", json={
                "model": "embedder", "messages": [{"role": "user", "content": "hi"}]})
            served = await http.post("/embeddings", json={"model": "embedder", "input": "hi"})
        assert emb.status_code == 400, emb.text
        assert emb.json()["error"] == {
            "message": "model 'chatty' does not serve embeddings: it is a chat model; models "
                       "that do: embedder",
            "type": "invalid_request_error", "param": "model", "code": "model_not_supported"}
        assert chat.status_code == 400 and "it is an embedding model" in chat.text
        assert "models that do: chatty" in chat.text
        assert served.status_code == 200, served.text
        assert w.engine.calls == calls  # the refused requests never reached the node
        w.gw.flush(release_all=True)
        assert [r.requests for r in (await w.alice.usage()).usage] == [1]  # refused: free
