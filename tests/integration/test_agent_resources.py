"""HF resources through the node agent: fetched once into the node's cache, mounted read-only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fixtures import Market
from executor_fixtures import HAVE_PODMAN, busybox_image
from test_agent import NodeUnderTest, post

from hf_server import FakeHub
from nosgrid.node.executor import BUSYBOX_IMAGE

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(not HAVE_PODMAN, reason="podman is not installed"),
]
__all__ = ["busybox_image"]
REPO = "acme/tiny-model"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with FakeHub() as server:
        server.add_repo(REPO, {"config.json": b'{"layers": 2}\n', "weights.bin": b"W" * 4096},
                        lfs={"weights.bin"})
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def model_job(cmd: str, repo: str = REPO) -> dict[str, object]:
    return {"version": "0.1", "type": "container", "ops": [{
        "type": "container/run", "id": "infer",
        "args": {"image": BUSYBOX_IMAGE, "cmd": cmd, "resources": [
            {"type": "HF", "repo": repo, "files": ["config.json", "weights.bin"],
             "target": "/models/tiny"}]}}]}


async def test_model_is_fetched_once_and_mounted_read_only(
    market: Market, tmp_path: Path, busybox_image: str, hub: FakeHub
) -> None:
    node = NodeUnderTest(market, tmp_path)
    node.start()
    try:
        cmd = ("cat /models/tiny/config.json; wc -c < /models/tiny/weights.bin; "
               "touch /models/tiny/x 2>/dev/null && echo WRITABLE || echo read-only")
        for _ in range(2):
            job_id = await post(market, model_job(cmd))
            done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
            assert done.state == "settled" and done.fault is None, done
            logs = "".join(c.data for c in (await market.alice.logs(job_id)).chunks)
            assert '{"layers": 2}' in logs and "4096" in logs and "read-only" in logs
        assert hub.file_gets(REPO, "weights.bin") == 1  # the second job used the cache
    finally:
        await node.close()


async def test_missing_model_fails_the_job_and_costs_nothing(
    market: Market, tmp_path: Path, busybox_image: str, hub: FakeHub
) -> None:
    node = NodeUnderTest(market, tmp_path)
    node.start()
    try:
        job_id = await post(market, model_job("true", repo="acme/nope"))
        done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
        assert done.state == "settled" and done.fault == "client", done
        assert "resource" in done.reason and done.seconds_used <= 1
        assert (await market.alice.balance()).balance_nos == "100"
    finally:
        await node.close()


async def test_missing_image_is_the_clients_fault_and_free(
    market: Market, tmp_path: Path, busybox_image: str
) -> None:
    node = NodeUnderTest(market, tmp_path)
    node.start()
    try:
        spec = {"version": "0.1", "type": "container", "ops": [{
            "type": "container/run", "id": "x", "args": {"image": "localhost/nope:1"}}]}
        job_id = await post(market, spec)
        done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
        assert done.fault == "client" and "image" in done.reason
        assert (await market.alice.balance()).balance_nos == "100"
        assert (await market.alice.node(node.agent.node_id or "")).offences == 0
    finally:
        await node.close()
