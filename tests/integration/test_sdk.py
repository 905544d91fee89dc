"""The typed SDK against the in-process app: the sync twin of every async method, the
models it returns, and the OpenAPI document describing every answer."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_fixtures import BUSYBOX_SPEC
from solders.keypair import Keypair

import nosgrid.sdk as sdk
from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.money import format_nos
from nosgrid.sdk import ENDED, AsyncClient, Client, InsufficientFunds, JobState, JobView
from nosgrid.sdk.models import AccountView, LogChunkView, SettlementSplit


@pytest.fixture
def app(tmp_path: Path) -> Iterator[object]:
    admin = Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path,
                                   admin_keys=frozenset({str(admin.pubkey())}), faucet=True)
    app = create_app(settings, background=False)
    app.state.admin = admin
    yield app
    app.state.coordinator.store.close()


def _client(app: object, kp: Keypair | None = None) -> Client:
    return Client("http://coordinator", kp or Keypair(),
                  transport=httpx.ASGITransport(app=app))  # type: ignore[arg-type]


def test_sync_client_returns_models(app: object) -> None:
    with _client(app, app.state.admin) as admin:  # type: ignore[attr-defined]
        assert admin.create_market({"name": "cpu", "price_per_second": 1000,
                                    "max_timeout": 600, "fee_bps": 500}).name == "cpu"
    with _client(app) as alice, _client(app) as node:
        assert isinstance(alice.faucet("0.5"), sdk.FaucetView)
        with pytest.raises(InsufficientFunds):
            alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=600)
        job = alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
        assert isinstance(job, JobView) and job.state is JobState.QUEUED
        assert job.settlement is None and job.deposit_nos == "0.1"
        assert alice.wait(job.id, timeout_s=0).id == job.id  # gives up: still queued
        assert node.register_node({"cpu_cores": 2, "memory_mb": 4096}, ["cpu"]).markets == ["cpu"]
        polled = node.poll(wait=0)
        assert polled.job is not None and polled.job.id == job.id
        node.start_job(job.id)
        node.push_logs(job.id, [{"stream": "stdout", "data": "hello\n"}])
        node.finish_job(job.id, seconds_used=30)
        assert [c.data for c in alice.follow_logs(job.id)] == ["hello\n"]
        assert all(isinstance(c, LogChunkView) for c in alice.logs(job.id).chunks)
        done = alice.wait(job.id)
        assert done.state in ENDED and done.state is JobState.SETTLED
        pay = done.settlement
        assert isinstance(pay, SettlementSplit)
        assert pay.node_pay + pay.treasury_fee + pay.stakers_fee + pay.refund == job.deposit
        cost = job.deposit - pay.refund
        assert alice.balance() == AccountView(
            pubkey=alice.pubkey, balance=500_000 - cost, balance_nos=format_nos(500_000 - cost),
            stake=0, stake_nos="0")
        assert [j.id for j in alice.jobs().jobs] == [job.id]
        assert alice.verification(job.id).status == "not_verified"
        assert alice.ledger_verify().ok and alice.health().settlement == "local"
        assert alice.stake().staked is False


def test_every_async_method_has_a_sync_twin_with_its_signature() -> None:
    assert not hasattr(Client, "__getattr__")
    public = {name for name, fn in inspect.getmembers(AsyncClient, inspect.isfunction)
              if not name.startswith("_") and name not in {"aclose"}}
    for name in public:
        twin = getattr(Client, name)
        assert inspect.signature(twin).parameters.keys() == \
            inspect.signature(getattr(AsyncClient, name)).parameters.keys(), name


def test_the_sdk_exports_models_errors_and_states() -> None:
    for name in ("Client", "AsyncClient", "JobView", "VerificationView", "NosgridError",
                 "InsufficientFunds", "JobState", "ENDED"):
        assert name in sdk.__all__ and hasattr(sdk, name)
    assert JobState.VERIFYING in ENDED and JobState.RUNNING not in ENDED


def test_openapi_describes_every_answer(app: object) -> None:
    doc = app.openapi()  # type: ignore[attr-defined]
    missing = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith("/openai/"):  # OpenAI-shaped: documented by OpenAI's API
                continue
            ok = [r for code, r in op["responses"].items() if str(code).startswith("2")
                  and any(c.get("schema") for c in r.get("content", {}).values())]
            errors = op["responses"].get("4XX", {}).get("content", {})
            if not ok or "ErrorBody" not in str(errors):
                missing.append(f"{method.upper()} {path}")
    assert not missing
