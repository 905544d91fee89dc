"""A fake OpenAI-compatible engine (llama.cpp's shapes) and a coordinator on real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.gateway import GatewaySettings
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.apikeys import issue_key
from nosgrid.sdk import solana as solana_wallet
from nosgrid.sdk.client import AsyncClient
from nosgrid.settlement.onchain import SolanaBackend
from nosgrid.settlement.sender import Sender
from nosgrid.store.db import Store

HW = {"cpu_cores": 2, "memory_mb": 4096}
SERVICE_SPEC = {
    "version": "0.1", "type": "container",
    "ops": [{"type": "container/run", "id": "llm",
             "args": {"image": "localhost/nosgrid-busybox:test", "cmd": ["true"],
                      "expose": [{"port": 8000, "type": "api"}]}}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakeEngine:
    """Answers like llama.cpp: one token per stream chunk, no usage in streams."""

    die_after: int | None = None  # break the stream after this many tokens
    status: int = 200
    calls: int = 0
    last_body: dict[str, Any] = field(default_factory=dict)  # the last chat request received
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        app = FastAPI()
        self.app = app

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

        @app.post("/extras/tokenize/count")
        async def count(request: Request) -> dict[str, Any]:
            return {"count": len((await request.json())["input"].split())}

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> dict[str, Any]:
            body = await request.json()
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            n = sum(len(str(i).split()) for i in inputs)
            return {"object": "list", "model": body["model"],
                    "data": [{"object": "embedding", "index": i, "embedding": [0.1 * i, 0.2, 0.3]}
                             for i in range(len(inputs))],
                    "usage": {"prompt_tokens": n, "total_tokens": n}}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            self.calls += 1
            body = await request.json()
            self.last_body = body
            if self.status != 200:
                return JSONResponse({"error": {"message": "boom", "type": "server_error",
                                               "param": None, "code": None}}, self.status)
            prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            n = int(body.get("max_tokens") or 16)
            words = [f"w{i} " for i in range(n)]
            if not body.get("stream"):
                return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "length",
                                     "message": {"role": "assistant", "content": "".join(words)}}],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": n,
                                  "total_tokens": prompt + n}}

            async def events() -> AsyncIterator[bytes]:
                def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                    return ("data: " + json.dumps({
                        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                        "model": body["model"], "choices": [
                            {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
                            ).encode()
                yield chunk({"role": "assistant"})
                for i, w in enumerate(words):
                    if self.die_after is not None and i >= self.die_after:
                        await asyncio.sleep(0.05)
                        raise RuntimeError("the node died")
                    yield chunk({"content": w})
                    await asyncio.sleep(0.001)
                yield chunk({}, "length")
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")


@contextlib.asynccontextmanager
async def serve(app: Any, port: int, lifespan: str = "on") -> AsyncIterator[str]:
    """``app`` on real uvicorn in this event loop (``lifespan="off"``: its start-up and
    shutdown never run, as in a process that is killed)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan=lifespan))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class GatewayWorld:
    url: str
    app: Any
    alice_kp: Keypair
    alice: AsyncClient
    node: AsyncClient
    admin: AsyncClient
    engine: FakeEngine
    engine_url: str
    backend: SolanaBackend | None = None  # settlement="litesvm": the chain and its sender
    sender: Sender | None = None

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def key(self, **kw: Any) -> str:
        args: dict[str, Any] = {"cap": 10_000_000, "expires_at": int(time.time()) + 3600,
                                "issued_at": int(time.time())}
        args.update(kw)
        return issue_key(self.alice_kp, **args)

    async def add_replica(self, client: AsyncClient, model: str = "fake",
                          endpoint: str | None = None) -> str:
        job = await self.alice.post_job(spec=SERVICE_SPEC, market="cpu")
        polled = await client.poll(wait=1)
        assert polled.job.id == job.id
        await client.start_job(job.id)
        await client.report_service(job.id, "llm", endpoint or self.engine_url, True,
                                    model=model)
        return str(job.id)


@contextlib.asynccontextmanager
async def gateway_world(tmp_path: Path, *, settlement: str = "local",
                        **gw: Any) -> AsyncIterator[GatewayWorld]:
    """A coordinator with the gateway (real uvicorn), a fake engine, a funded client and a
    node; ``settlement="litesvm"`` settles on an in-process chain instead of the ledger."""
    admin_kp, alice_kp = Keypair(), Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path,
                                   admin_keys=frozenset({str(admin_kp.pubkey())}), faucet=True,
                                   settlement=settlement)
    backend: SolanaBackend | None = None
    extra: dict[str, Any] = {}
    if settlement == "litesvm":
        backend = await SolanaBackend.litesvm()
        store = Store.open(settings.db_url)
        await backend.open(store, int(time.time()))
        extra = {"store": store, "settlement": backend}
    app = create_app(settings, background=False, gateway=GatewaySettings(**gw), **extra)
    sender = (Sender(app.state.coordinator.store, backend.settlement, retry_after_s=0)
              if backend is not None else None)
    engine = FakeEngine()
    async with serve(app, free_port()) as url, serve(engine.app, free_port()) as engine_url:
        admin, alice = AsyncClient(url, admin_kp), AsyncClient(url, alice_kp)
        node = AsyncClient(url, Keypair())
        await admin.create_market({"name": "cpu", "price_per_second": 10, "max_timeout": 3600,
                                   "fee_bps": 500})
        if backend is None:
            await alice.faucet("100")
        else:
            await solana_wallet.faucet(alice, "100")
            await solana_wallet.approve(alice, 50 * 10**6)
        await node.register_node(HW, ["cpu"])
        try:
            yield GatewayWorld(url, app, alice_kp, alice, node, admin, engine, engine_url,
                               backend, sender)
        finally:
            for c in (admin, alice, node):
                await c.aclose()
