"""Replay protection: nonces ride in the request's transaction and survive a restart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from api_fixtures import Clock
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.sdk.wallet import sign_headers


def _app(tmp: Path, clock: Clock) -> httpx.AsyncClient:
    settings = CoordinatorSettings(db=str(tmp / "c.db"), data_dir=tmp, faucet=True)
    app = create_app(settings, clock=clock, background=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c")


async def test_replays_are_refused_even_after_a_restart(tmp_path: Path) -> None:
    clock, kp = Clock(), Keypair()
    body = json.dumps({"amount": "1"}).encode()
    json_type = {"content-type": "application/json"}
    ok = {**sign_headers(kp, "POST", "/v1/faucet", body, now=clock()), **json_type}
    bad_body = json.dumps({"amount": "-1"}).encode()
    failed = {**sign_headers(kp, "POST", "/v1/faucet", bad_body, now=clock()), **json_type}
    async with _app(tmp_path, clock) as c:
        assert (await c.post("/v1/faucet", content=body, headers=ok)).status_code == 200
        assert (await c.post("/v1/faucet", content=bad_body, headers=failed)).status_code == 400
        again = await c.post("/v1/faucet", content=body, headers=ok)
        assert again.status_code == 401 and again.json()["error"]["code"] == "replayed_nonce"
    async with _app(tmp_path, clock) as c:  # a new process on the same database
        for headers, payload in ((ok, body), (failed, bad_body)):
            resp = await c.post("/v1/faucet", content=payload, headers=headers)
            assert resp.json()["error"]["code"] == "replayed_nonce"
        me = sign_headers(kp, "GET", "/v1/accounts/me", b"", now=clock())
        assert (await c.get("/v1/accounts/me", headers=me)).json()["balance_nos"] == "1"


async def test_a_request_replayed_to_a_second_coordinator_process_is_refused(
        tmp_path: Path) -> None:
    """Two coordinators on one database (as several processes would run): the nonce one of
    them accepted is in the database, so the other refuses the replay and changes nothing."""
    clock, kp = Clock(), Keypair()
    body = json.dumps({"amount": "1"}).encode()
    signed = {**sign_headers(kp, "POST", "/v1/faucet", body, now=clock()),
              "content-type": "application/json"}
    async with _app(tmp_path, clock) as a, _app(tmp_path, clock) as b:
        me = sign_headers(kp, "GET", "/v1/accounts/me", b"", now=clock())
        await b.get("/v1/accounts/me", headers=me)  # b has loaded its nonces: none yet
        assert (await a.post("/v1/faucet", content=body, headers=signed)).status_code == 200
        replay = await b.post("/v1/faucet", content=body, headers=signed)
        assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed_nonce"
        me = sign_headers(kp, "GET", "/v1/accounts/me", b"", now=clock())
        assert (await b.get("/v1/accounts/me", headers=me)).json()["balance_nos"] == "1"
