"""Hostile and broken requests against the coordinator API (in-process, fixture clock).

Every case checks three things: the right 4xx status and error code, the error body shape
``{"error": {"code", "message"}}`` with no Python traceback, and that nothing changed —
every table but the nonce log, the blob directory, and the ledger head and entry count
that ``GET /v1/ledger/verify`` reports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from api_fixtures import BUSYBOX_SPEC, Clock, Market
from solders.keypair import Keypair
from sqlalchemy import select

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.identity import (
    HEADER_NONCE,
    HEADER_PUBKEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SIGNATURE_WINDOW_S,
    request_message,
)
from nosgrid.sdk.wallet import sign_headers
from nosgrid.store import tables as t

HW = {"cpu_cores": 2, "memory_mb": 4096}
FOUR_HEADERS = (HEADER_PUBKEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)


# -- helpers -------------------------------------------------------------------------------


def kp_of(client: Any) -> Keypair:
    kp: Keypair = client.keypair
    return kp


async def send(m: Market, method: str, path: str, body: bytes | Any = b"", *,
               signer: Keypair | None = None, headers: dict[str, str] | None = None,
               now: float | None = None) -> httpx.Response:
    """One raw request; signed by ``signer`` over exactly what is sent unless ``headers``."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    hdrs = {"content-type": "application/json"} if body else {}
    if signer is not None:
        hdrs.update(sign_headers(signer, method, path, body,
                                 now=m.clock.t if now is None else now))
    hdrs.update(headers or {})
    async with httpx.AsyncClient(transport=m.transport, base_url="http://coordinator") as http:
        return await http.request(method, path, content=body or None, headers=hdrs)


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


async def snapshot(m: Market) -> dict[str, Any]:
    """Everything a request could change, except the nonce log (auth bookkeeping)."""
    state: dict[str, Any] = {}
    with m.coord.store.uow(write=False) as uow:
        for table in t.metadata.sorted_tables:
            if table.name != "nonces":
                state[table.name] = sorted(repr(tuple(r)) for r in uow.conn.execute(
                    select(table)))
    root = m.coord.blobs.root
    state["blob_files"] = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    verify = (await send(m, "GET", "/v1/ledger/verify")).json()
    assert verify["ok"], verify
    state["ledger"] = (verify["entries"], verify["head_hash"])
    return state


@dataclass
class World:
    m: Market
    running: str  # alice's job, assigned to `node` and running
    queued: str  # alice's job, still queued


@pytest_asyncio.fixture
async def world(market: Market) -> World:
    m = market
    await m.alice.faucet("10")
    await m.bob.faucet("10")
    await m.node.register_node(HW, ["cpu"])
    await m.node2.register_node(HW, ["cpu"])
    running = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    assert (await m.node.poll(wait=0)).job.id == running.id  # nobody else polls
    assert (await m.node.start_job(running.id)).state == "running"
    queued = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    return World(m, running.id, queued.id)


async def rejected(w: World, status: int, code: str | None, method: str, path: str,
                   body: bytes | Any = b"", **kwargs: Any) -> dict[str, Any]:
    """Send, check the error, and check that nothing changed."""
    before = await snapshot(w.m)
    err = assert_error(await send(w.m, method, path, body, **kwargs), status, code)
    assert await snapshot(w.m) == before
    return err


# -- signatures ----------------------------------------------------------------------------


async def test_signed_by_another_key(world: World) -> None:
    m, path = world.m, f"/v1/jobs/{world.queued}/cancel"
    forged = sign_headers(kp_of(m.bob), "POST", path, b"", now=m.clock.t)
    forged[HEADER_PUBKEY] = m.alice.pubkey  # claims to be alice, signed by bob
    await rejected(world, 401, "bad_signature", "POST", path, headers=forged)


async def test_body_changed_after_signing(world: World) -> None:
    m = world.m
    signed = sign_headers(kp_of(m.alice), "POST", "/v1/faucet", b'{"amount":"1"}',
                          now=m.clock.t)
    await rejected(world, 401, "bad_signature", "POST", "/v1/faucet",
                   b'{"amount":"1000"}', headers=signed)


async def test_request_changed_after_signing(world: World) -> None:
    for what in ("path", "query", "method"):
        await _changed_after_signing(world, what)


async def _changed_after_signing(world: World, what: str) -> None:
    m = world.m
    signed_path, method, sent_path = f"/v1/jobs/{world.queued}/cancel", "POST", ""
    if what == "path":  # a signature for one job used on another
        sent_path = f"/v1/jobs/{world.running}/cancel"
    elif what == "query":
        signed_path, method = "/v1/accounts/me/journal?limit=1", "GET"
        sent_path = "/v1/accounts/me/journal?limit=2"
    else:
        signed_path, method, sent_path = f"/v1/jobs/{world.queued}", "GET", signed_path
    headers = sign_headers(kp_of(m.alice), method, signed_path, b"", now=m.clock.t)
    send_method = "POST" if what == "method" else method
    await rejected(world, 401, "bad_signature", send_method, sent_path, headers=headers)


async def test_replayed_nonce_is_refused_and_pays_once(world: World) -> None:
    m = world.m
    body = b'{"amount":"1"}'
    headers = sign_headers(kp_of(m.alice), "POST", "/v1/faucet", body, now=m.clock.t)
    ok = await send(m, "POST", "/v1/faucet", body, headers=headers)
    assert ok.status_code == 200 and ok.json()["balance_nos"] == "10.8"  # 2 deposits out
    await rejected(world, 401, "replayed_nonce", "POST", "/v1/faucet", body, headers=headers)
    # the same nonce, freshly signed over another body and a later second: still a replay
    m.clock.t += 1
    ts = int(m.clock.t)
    nonce = headers[HEADER_NONCE]
    again = {HEADER_PUBKEY: m.alice.pubkey, HEADER_TIMESTAMP: str(ts), HEADER_NONCE: nonce,
             HEADER_SIGNATURE: str(kp_of(m.alice).sign_message(request_message(
                 "POST", "/v1/faucet", b'{"amount":"2"}', ts, nonce)))}
    await rejected(world, 401, "replayed_nonce", "POST", "/v1/faucet", b'{"amount":"2"}',
                   headers=again)
    # a nonce is per key: bob may use the same string
    bob = {**sign_headers(kp_of(m.bob), "GET", "/v1/accounts/me", b"", now=m.clock.t)}
    bob[HEADER_NONCE] = nonce
    bob[HEADER_SIGNATURE] = str(kp_of(m.bob).sign_message(request_message(
        "GET", "/v1/accounts/me", b"", int(bob[HEADER_TIMESTAMP]), nonce)))
    assert (await send(m, "GET", "/v1/accounts/me", headers=bob)).status_code == 200


async def test_stale_timestamp_either_side(world: World) -> None:
    m = world.m
    for skew in (-SIGNATURE_WINDOW_S - 1, SIGNATURE_WINDOW_S + 1, -3600, 10**9):
        await rejected(world, 401, "stale_request", "POST", f"/v1/jobs/{world.queued}/cancel",
                       signer=kp_of(m.alice), now=m.clock.t + skew)
    for skew in (-SIGNATURE_WINDOW_S, SIGNATURE_WINDOW_S):  # the window's edges are inside
        resp = await send(m, "GET", "/v1/accounts/me", signer=kp_of(m.alice),
                          now=m.clock.t + skew)
        assert resp.status_code == 200, skew


async def test_old_request_is_refused_after_the_clock_moves(world: World) -> None:
    m = world.m
    path = f"/v1/jobs/{world.queued}/cancel"
    captured = sign_headers(kp_of(m.alice), "POST", path, b"", now=m.clock.t)
    m.clock.t += SIGNATURE_WINDOW_S + 1
    await rejected(world, 401, "stale_request", "POST", path, headers=captured)


async def test_missing_header(world: World) -> None:
    m = world.m
    path = f"/v1/jobs/{world.queued}/cancel"
    for missing in FOUR_HEADERS:
        headers = sign_headers(kp_of(m.alice), "POST", path, b"", now=m.clock.t)
        del headers[missing]
        await rejected(world, 401, "unauthorized", "POST", path, headers=headers)


async def test_no_headers_at_all(world: World) -> None:
    for method, path in [("GET", "/v1/accounts/me"), ("POST", "/v1/faucet"),
                         ("GET", f"/v1/jobs/{world.queued}"), ("POST", "/v1/nodes/heartbeat"),
                         ("PUT", "/v1/blobs/" + "0" * 64)]:
        await rejected(world, 401, "unauthorized", method, path)


MALFORMED_HEADERS = [
    (HEADER_PUBKEY, "not-base58!"),
    (HEADER_PUBKEY, "1111"),
    (HEADER_PUBKEY, "x" * 5000),
    (HEADER_SIGNATURE, "xyz"),
    (HEADER_SIGNATURE, "1" * 88),
    (HEADER_TIMESTAMP, "abc"),
    (HEADER_TIMESTAMP, "1e9"),
    (HEADER_TIMESTAMP, "1.5"),
    (HEADER_TIMESTAMP, "9" * 5000),
    (HEADER_NONCE, "short"),
    (HEADER_NONCE, "bad nonce with spaces"),
    (HEADER_NONCE, "n" * 65),
    (HEADER_NONCE, "../../../../etc/passwd"),
]


async def test_malformed_headers(world: World) -> None:
    m = world.m
    path = f"/v1/jobs/{world.queued}/cancel"
    for header, value in MALFORMED_HEADERS:
        headers = sign_headers(kp_of(m.alice), "POST", path, b"", now=m.clock.t)
        headers[header] = value
        err = await rejected(world, 401, None, "POST", path, headers=headers)
        assert err["code"] in {"bad_signature", "stale_request"}, (header, value)


# -- who may act on what -------------------------------------------------------------------


async def test_other_client_cannot_touch_a_job(world: World) -> None:
    m = world.m
    for method, suffix in [("GET", ""), ("GET", "/spec"), ("GET", "/result"), ("GET", "/logs"),
                           ("GET", "/logs?follow=true"), ("POST", "/cancel")]:
        for job in (world.running, world.queued):
            await rejected(world, 403, "forbidden", method, f"/v1/jobs/{job}{suffix}",
                           signer=kp_of(m.bob))


NODE_REPORTS: list[tuple[str, Any]] = [
    ("/start", b""),
    ("/finish", {"seconds_used": 1, "exit_code": 0}),
    ("/fail", {"reason": "no", "fault": "node"}),
    ("/logs", {"chunks": [{"stream": "stdout", "data": "forged\n"}]}),
]


async def test_other_node_cannot_report_a_job(world: World) -> None:
    for suffix, body in NODE_REPORTS:
        await _other_node_reports(world, suffix, body)


async def _other_node_reports(world: World, suffix: str, body: Any) -> None:
    m = world.m
    for actor in (m.node2, m.bob, m.alice):  # another node, a stranger, the job's own client
        await rejected(world, 403, "forbidden", "POST", f"/v1/jobs/{world.running}{suffix}",
                       body, signer=kp_of(actor))
    # the queued job has no node at all
    await rejected(world, 403, "forbidden", "POST", f"/v1/jobs/{world.queued}{suffix}", body,
                   signer=kp_of(m.node2))


async def test_unregistered_node(world: World) -> None:
    m = world.m
    await rejected(world, 404, "node_not_found", "POST", "/v1/nodes/heartbeat",
                   signer=kp_of(m.bob))
    await rejected(world, 404, "node_not_found", "POST", "/v1/nodes/poll", {"wait": 0},
                   signer=kp_of(m.bob))


async def test_non_admin_cannot_create_a_market(world: World) -> None:
    m = world.m
    params = {"name": "free-gpus", "price_per_second": 0, "max_timeout": 600}
    for who in (m.alice, m.node):
        await rejected(world, 403, "forbidden", "POST", "/v1/markets", params,
                       signer=kp_of(who))
    assert [x.name for x in await m.alice.markets()] == ["cpu"]


async def test_unknown_job_and_market(world: World) -> None:
    m = world.m
    await rejected(world, 404, "job_not_found", "GET", "/v1/jobs/nope", signer=kp_of(m.alice))
    await rejected(world, 404, "market_not_found", "POST", "/v1/jobs",
                   {"spec": BUSYBOX_SPEC, "market": "nope"}, signer=kp_of(m.alice))
    await rejected(world, 404, "market_not_found", "GET", "/v1/markets/nope")
    await rejected(world, 404, "not_found", "GET", "/v1/no/such/route")
    await rejected(world, 405, None, "DELETE", "/v1/markets")


# -- bodies --------------------------------------------------------------------------------


async def test_oversize_body_with_content_length(world: World) -> None:
    m = world.m
    big = b'{"amount":"1","pad":"' + b"x" * m.coord.settings.max_body_bytes + b'"}'
    await rejected(world, 413, "payload_too_large", "POST", "/v1/faucet", big,
                   signer=kp_of(m.alice))


@pytest.mark.parametrize("path", ["/v1/faucet", "/v1/nodes/heartbeat"])
async def test_oversize_body_streamed_without_content_length(world: World, path: str) -> None:
    m = world.m
    chunk = b"x" * 65536
    count = m.coord.settings.max_body_bytes // len(chunk) + 2
    whole = chunk * count
    headers = sign_headers(kp_of(m.alice), "POST", path, whole, now=m.clock.t)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield chunk

    before = await snapshot(m)
    async with httpx.AsyncClient(transport=m.transport, base_url="http://coordinator") as http:
        request = http.build_request("POST", path, content=chunks(),
                                     headers={**headers, "content-type": "application/json"})
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        resp = await http.send(request)
    assert_error(resp, 413, "payload_too_large")
    assert await snapshot(m) == before


async def test_malformed_json(world: World) -> None:
    for body in [b"{", b'{"amount": }', b"\xff\xfe\x00", b"[]", b'"1"', b"null",
                 b'{"amount":"1"}garbage', b'{"amount":"1","extra":1}', b"{}"]:
        await rejected(world, 400, "invalid_input", "POST", "/v1/faucet", body,
                       signer=kp_of(world.m.alice))


async def test_malformed_job_bodies(world: World) -> None:
    m = world.m
    for body in [b"{", {"spec": BUSYBOX_SPEC, "market": "cpu", "timeout": 0},
                 {"spec": BUSYBOX_SPEC, "market": "cpu", "timeout": "ten"},
                 {"spec": BUSYBOX_SPEC, "spec_text": "{}", "market": "cpu"},
                 {"spec": "not an object", "market": "cpu"}]:
        err = await rejected(world, 400, None, "POST", "/v1/jobs", body, signer=kp_of(m.alice))
        assert err["code"] == "invalid_input"
    await rejected(world, 422, "invalid_job_spec", "POST", "/v1/jobs",
                   {"spec": {"version": "0.1", "ops": []}, "market": "cpu"},
                   signer=kp_of(m.alice))


BAD_AMOUNTS: list[tuple[Any, str]] = [
    ("1.0000001", "invalid_amount"), ("-1", "invalid_amount"), ("abc", "invalid_amount"),
    ("", "invalid_amount"), ("1e3", "invalid_amount"), ("0", "invalid_amount"),
    ("NaN", "invalid_amount"), ("99999999999999999999999", "invalid_amount"),
    (1.5, "invalid_input"), (True, "invalid_input"), (None, "invalid_input"),
]


async def test_bad_amounts(world: World) -> None:
    for amount, code in BAD_AMOUNTS:
        await rejected(world, 400, code, "POST", "/v1/faucet", {"amount": amount},
                       signer=kp_of(world.m.alice))
    for max_price in ["1.0000001", "-1", 1.5, "x"]:
        err = await rejected(world, 400, None, "POST", "/v1/jobs",
                             {"spec": BUSYBOX_SPEC, "market": "cpu", "max_price": max_price},
                             signer=kp_of(world.m.alice))
        assert err["code"] in {"invalid_amount", "invalid_input"}, max_price


async def test_faucet_over_the_hourly_cap(world: World) -> None:
    m = world.m
    cap = m.coord.settings.faucet_cap_per_hour
    carol = m.client()
    whole = cap // 1_000_000
    assert (await carol.faucet(str(whole))).balance == cap
    await rejected(world, 429, "rate_limited", "POST", "/v1/faucet", {"amount": "0.000001"},
                   signer=kp_of(carol))
    m.clock.t += 3601  # an hour later the key may ask again
    assert (await carol.faucet("1")).balance == cap + 1_000_000
    await carol.aclose()


# -- blobs ---------------------------------------------------------------------------------


async def test_blob_whose_bytes_do_not_match(world: World) -> None:
    m = world.m
    claimed = hashlib.sha256(b"what I promised").hexdigest()
    await rejected(world, 400, "invalid_input", "PUT", f"/v1/blobs/{claimed}",
                   b"something else", signer=kp_of(m.alice),
                   headers={"content-type": "application/octet-stream"})
    assert not m.coord.blobs.exists(claimed)
    leftovers = [p for p in m.coord.blobs.root.rglob("*") if p.is_file()]
    assert leftovers == []
    resp = await send(m, "GET", f"/v1/blobs/{claimed}", signer=kp_of(m.alice))
    assert_error(resp, resp.status_code)
    assert resp.status_code in (403, 404)  # not stored, so nobody was granted it


async def test_invalid_sha256_path(world: World) -> None:
    for sha, method in itertools.product(
            ["abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "0" * 64 + "~"], ("PUT", "GET")):
        await rejected(world, 400, "invalid_input", method, f"/v1/blobs/{sha}", b"data",
                       signer=kp_of(world.m.alice))


async def test_encoded_tricks_in_the_blob_path(world: World) -> None:
    """Decoded by the server, these route elsewhere or no longer match the signature."""
    for sha, method in itertools.product(
            ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "0" * 64 + "%00"], ("PUT", "GET")):
        before = await snapshot(world.m)
        resp = await send(world.m, method, f"/v1/blobs/{sha}", b"data",
                          signer=kp_of(world.m.alice))
        assert_error(resp, resp.status_code)
        assert resp.status_code in (400, 401, 404)
        assert await snapshot(world.m) == before


# -- variants of the coordinator -----------------------------------------------------------


@pytest_asyncio.fixture
async def strict(tmp_path: Path) -> AsyncIterator[Market]:
    """A coordinator without a faucet and with small body and blob limits."""
    from nosgrid.sdk.client import AsyncClient

    clock = Clock()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path, faucet=False,
                                   max_body_bytes=4096, max_blob_bytes=16384)
    app = create_app(settings, clock=clock, background=False)
    transport = httpx.ASGITransport(app=app)

    def mk() -> AsyncClient:
        return AsyncClient("http://coordinator", Keypair(), transport=transport, clock=clock)

    m = Market(app.state.coordinator, clock, mk(), mk(), mk(), mk(), mk(), transport)
    yield m
    for c in (m.admin, m.alice, m.bob, m.node, m.node2):
        await c.aclose()


async def test_faucet_when_disabled(strict: Market) -> None:
    w = World(strict, "", "")
    await rejected(w, 404, "not_found", "POST", "/v1/faucet", {"amount": "1"},
                   signer=kp_of(strict.alice))


async def test_oversize_blob(strict: Market) -> None:
    m = strict
    w = World(m, "", "")
    data = b"z" * (m.coord.settings.max_blob_bytes + 1)
    sha = hashlib.sha256(data).hexdigest()
    await rejected(w, 413, "payload_too_large", "PUT", f"/v1/blobs/{sha}", data,
                   signer=kp_of(m.alice), headers={"content-type": "application/octet-stream"})
    # streamed, without a Content-Length
    headers = sign_headers(kp_of(m.alice), "PUT", f"/v1/blobs/{sha}", data, now=m.clock.t)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    before = await snapshot(m)
    async with httpx.AsyncClient(transport=m.transport, base_url="http://coordinator") as http:
        resp = await http.put(f"/v1/blobs/{sha}", content=chunks(), headers=headers)
    assert_error(resp, 413, "payload_too_large")
    assert await snapshot(m) == before
    assert [p for p in m.coord.blobs.root.rglob("*") if p.is_file()] == []
    # a blob at the limit is fine
    ok = data[:-1]
    assert await m.alice.upload_blob(ok) == hashlib.sha256(ok).hexdigest()


# -- regressions found by schemathesis -----------------------------------------------------


async def test_cursors_past_the_database_integer_are_400_not_500(world: World) -> None:
    """``?before=2**63`` used to reach SQLite and fail with OverflowError (500)."""
    for path in ["/v1/accounts/me/journal?before=9223372036854775808",
                 "/v1/jobs?cursor=9223372036854775808",
                 f"/v1/jobs/{world.running}/logs?after=9223372036854775808"]:
        await rejected(world, 400, "invalid_input", "GET", path, signer=kp_of(world.m.alice))


async def test_undecodable_body_gets_the_error_shape(world: World) -> None:
    """FastAPI's own 400 for a non-UTF-8 body used to answer ``{"detail": ...}``."""
    await rejected(world, 400, "invalid_input", "POST", "/v1/nodes/register", b"\x80",
                   signer=kp_of(world.m.node))
