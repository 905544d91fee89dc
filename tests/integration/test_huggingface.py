"""HF resources through the real huggingface_hub client against a local HF-compatible server."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hf_server import FakeHub
from nosgrid.core.errors import InvalidInput, NosgridError
from nosgrid.core.jobs.fields import HFResource
from nosgrid.node.resources import (
    HFCache,
    HFFileNotFound,
    HFHashMismatch,
    HFRepoNotFound,
    HFRevisionNotFound,
    ResourceError,
    ResourceUnavailable,
    model_key,
    prepare_hf_resource,
)

REPO = "org/tiny-model"
CONFIG = b'{"model_type": "tiny", "hidden_size": 8}\n'
WEIGHTS = bytes(range(256)) * 4096  # 1 MiB, served as an LFS file
TOKENIZER = b'{"vocab": {"a": 0, "b": 1}}\n'


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(
            REPO,
            {"config.json": CONFIG, "model.bin": WEIGHTS, "tok/tokenizer.json": TOKENIZER},
            lfs={"model.bin"},
        )
        yield server


@pytest.fixture(autouse=True)
def _no_ambient_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing may reach a real hub or read the developer's token or cache."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def endpoint(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return hub.url


@pytest.fixture
def cache(tmp_path: Path) -> HFCache:
    return HFCache(tmp_path / "hf-cache", max_bytes=64 * 1024 * 1024)


def resource(**kw: object) -> HFResource:
    body: dict[str, object] = {"type": "HF", "repo": REPO, "target": "/models"}
    body.update(kw)
    return HFResource.model_validate(body)


def cache_files(cache: HFCache) -> list[Path]:
    """Blobs and model files left in the cache (locks, pins and refs excluded)."""
    roots = [cache.root / sub for sub in ("blobs", "models", "manifests", "tmp")]
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


async def test_fetches_the_whole_repo_through_hf_endpoint(
    endpoint: str, cache: HFCache, hub: FakeHub
) -> None:
    path = await prepare_hf_resource(resource(), cache)

    assert (path / "config.json").read_bytes() == CONFIG
    assert (path / "model.bin").read_bytes() == WEIGHTS
    assert (path / "tok" / "tokenizer.json").read_bytes() == TOKENIZER
    assert (path / "model.bin").stat().st_mode & 0o777 == 0o444  # read-only, world-readable
    blob = cache.root / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()
    assert blob.samefile(path / "model.bin")  # content-addressed, hard-linked
    assert hub.file_gets(REPO, "model.bin") == 1
    assert cache.models()[0].pinned
    cache.release(path)
    assert not cache.models()[0].pinned


async def test_files_selection_and_revision_by_branch_and_commit(
    endpoint: str, cache: HFCache, hub: FakeHub
) -> None:
    old = hub.repos[REPO].refs["main"]
    hub.add_repo(REPO, {"config.json": b'{"v": 2}\n', "model.bin": WEIGHTS}, lfs={"model.bin"})

    latest = await prepare_hf_resource(resource(files=["config.json"]), cache)
    pinned_old = await prepare_hf_resource(resource(revision=old, files=["config.json"]), cache)

    assert [p.name for p in latest.iterdir()] == ["config.json"]
    assert (latest / "config.json").read_bytes() == b'{"v": 2}\n'
    assert (pinned_old / "config.json").read_bytes() == CONFIG


async def test_second_fetch_is_a_cache_hit(endpoint: str, cache: HFCache, hub: FakeHub) -> None:
    first = await prepare_hf_resource(resource(), cache)
    gets = len([r for r in hub.requests if "/resolve/" in r[1]])

    second = await prepare_hf_resource(resource(), cache)

    assert second == first
    assert len([r for r in hub.requests if "/resolve/" in r[1]]) == gets  # no HEAD, no GET
    assert hub.file_gets(REPO, "model.bin") == 1


async def test_a_second_cache_object_on_the_same_root_hits_too(
    endpoint: str, cache: HFCache, hub: FakeHub
) -> None:
    await prepare_hf_resource(resource(), cache)
    other_process_view = HFCache(cache.root, max_bytes=cache.max_bytes)

    await prepare_hf_resource(resource(), other_process_view)

    assert hub.file_gets(REPO, "model.bin") == 1


async def test_same_blob_in_another_selection_is_not_downloaded_again(
    endpoint: str, cache: HFCache, hub: FakeHub
) -> None:
    await prepare_hf_resource(resource(files=["model.bin"]), cache)
    both = await prepare_hf_resource(resource(files=["model.bin", "config.json"]), cache)

    assert sorted(p.name for p in both.iterdir()) == ["config.json", "model.bin"]
    assert hub.file_gets(REPO, "model.bin") == 1


async def test_concurrent_fetches_download_once(
    endpoint: str, cache: HFCache, hub: FakeHub
) -> None:
    hub.delay_s = 0.3
    other = HFCache(cache.root, max_bytes=cache.max_bytes)  # as if from another process

    paths = await asyncio.gather(
        prepare_hf_resource(resource(), cache),
        prepare_hf_resource(resource(), cache),
        prepare_hf_resource(resource(), other),
    )

    assert len(set(paths)) == 1
    assert hub.file_gets(REPO, "model.bin") == 1
    assert hub.file_gets(REPO, "config.json") == 1


async def test_missing_repo_is_a_typed_error(endpoint: str, cache: HFCache) -> None:
    with pytest.raises(HFRepoNotFound) as err:
        await prepare_hf_resource(resource(repo="org/nope"), cache)

    assert isinstance(err.value, ResourceError) and isinstance(err.value, InvalidInput)
    assert "org/nope" in err.value.message and err.value.code == "hf_repo_not_found"
    assert cache_files(cache) == []


async def test_wrong_revision_is_a_typed_error(endpoint: str, cache: HFCache) -> None:
    with pytest.raises(HFRevisionNotFound, match="no revision 'v9'"):
        await prepare_hf_resource(resource(revision="v9", files=["config.json"]), cache)
    assert cache_files(cache) == []


async def test_missing_file_is_a_typed_error(endpoint: str, cache: HFCache) -> None:
    with pytest.raises(HFFileNotFound, match=r"missing\.bin"):
        await prepare_hf_resource(resource(files=["config.json", "missing.bin"]), cache)
    assert cache_files(cache) == []


@pytest.mark.parametrize("path", ["model.bin", "config.json"])  # LFS sha256 / git blob sha1
async def test_tampered_file_is_rejected_and_nothing_is_kept(
    endpoint: str, cache: HFCache, hub: FakeHub, path: str
) -> None:
    original = {"model.bin": WEIGHTS, "config.json": CONFIG}[path]
    hub.tamper(REPO, path, b"X" + original[1:])  # same size, different bytes

    with pytest.raises(HFHashMismatch, match="nothing was kept") as err:
        await prepare_hf_resource(resource(), cache)

    assert err.value.code == "hf_hash_mismatch"
    assert cache_files(cache) == []
    assert cache.models() == []


async def test_unreachable_hub_is_unavailable_not_the_clients_fault(
    cache: HFCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub() as gone:
        url = gone.url
    monkeypatch.setenv("HF_ENDPOINT", url)

    with pytest.raises(ResourceUnavailable) as err:
        await prepare_hf_resource(resource(files=["config.json"]), cache)

    assert not isinstance(err.value, InvalidInput)


async def test_cached_model_is_used_when_the_hub_is_down(
    cache: HFCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub() as hub:
        hub.add_repo(REPO, {"config.json": CONFIG})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        first = await prepare_hf_resource(resource(), cache)
    cache.release(first)

    again = await prepare_hf_resource(resource(), cache)  # the server is gone now

    assert again == first


async def test_lru_eviction_skips_pinned_models(
    hub: FakeHub, endpoint: str, tmp_path: Path
) -> None:
    mib = 1024 * 1024
    for name in ("a", "b", "c"):
        hub.add_repo(f"org/{name}", {"w.bin": name.encode() * mib}, lfs={"w.bin"})
    cache = HFCache(tmp_path / "small", max_bytes=int(2.5 * mib))

    a = await prepare_hf_resource(resource(repo="org/a"), cache)  # pinned: a running job
    b = await prepare_hf_resource(resource(repo="org/b"), cache)
    cache.release(b)  # b's job ended
    c = await prepare_hf_resource(resource(repo="org/c"), cache)

    assert a.is_dir() and c.is_dir()
    assert not b.exists()  # the least recently used unpinned model went
    assert cache.usage_bytes() <= cache.max_bytes
    assert {m.repo for m in cache.models()} == {"org/a", "org/c"}

    with pytest.raises(ResourceUnavailable, match="no room"):  # a and c pinned, no room for b
        await prepare_hf_resource(resource(repo="org/b"), cache)
    assert a.is_dir() and c.is_dir()


async def test_pins_held_by_another_process_block_eviction(
    hub: FakeHub, endpoint: str, tmp_path: Path
) -> None:
    mib = 1024 * 1024
    hub.add_repo("org/a", {"w.bin": b"a" * mib}, lfs={"w.bin"})
    hub.add_repo("org/b", {"w.bin": b"b" * mib}, lfs={"w.bin"})
    agent = HFCache(tmp_path / "shared", max_bytes=int(1.5 * mib))
    other = HFCache(tmp_path / "shared", max_bytes=int(1.5 * mib))

    a = await prepare_hf_resource(resource(repo="org/a"), agent)  # pinned by "process 1"

    with pytest.raises(ResourceUnavailable):
        await prepare_hf_resource(resource(repo="org/b"), other)
    agent.release(a)
    b = await prepare_hf_resource(resource(repo="org/b"), other)
    assert b.is_dir() and not a.exists()


def test_model_key_depends_on_repo_commit_and_selection() -> None:
    commit = "a" * 40
    assert model_key("o/m", commit, ["x", "y"]) == model_key("o/m", commit, ["y", "x"])
    assert model_key("o/m", commit, None) != model_key("o/m", commit, ["x"])
    assert model_key("o/m", commit, None) != model_key("o/m", "b" * 40, None)


def test_errors_are_nosgrid_errors_with_distinct_codes() -> None:
    classes = [HFRepoNotFound, HFRevisionNotFound, HFFileNotFound, HFHashMismatch]
    assert all(issubclass(c, ResourceError) for c in classes)
    assert len({c.code for c in [*classes, ResourceError, ResourceUnavailable]}) == 6
    assert issubclass(ResourceUnavailable, NosgridError)
    assert not os.environ.get("HF_TOKEN")
