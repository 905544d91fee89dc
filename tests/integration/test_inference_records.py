"""Reproducible gateway requests (issue 14): an explicit sampler and seed upstream, a
content-addressed usage record per request, and the usage entry carrying its hash."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import httpx
from gateway_fixtures import GatewayWorld, gateway_world

from nosgrid.core.verification.inference import UsageRecord, request_seed
from nosgrid.store.inference import RECORDED, InferenceRepo

MSG = [{"role": "user", "content": "one two three"}]


async def _post(w: GatewayWorld, key: str, body: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=w.url, timeout=30) as http:
        return await http.post("/openai/v1/chat/completions", json=body,
                               headers={"authorization": f"Bearer {key}"})


async def _settled(w: GatewayWorld) -> None:
    deadline = time.monotonic() + 10
    while any(b.reserved for b in w.gw.meter.books.values()) or w.gw.recorder.pending:
        assert time.monotonic() < deadline, "a request never settled"
        await asyncio.sleep(0.02)
        w.gw.save_charges()


async def test_a_request_is_seeded_recorded_and_its_hash_is_in_the_usage_entry(
        tmp_path: Path) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)
        key = w.key()
        resp = await _post(w, key, {"model": "fake", "messages": MSG, "max_tokens": 3})
        assert resp.status_code == 200
        rid = resp.headers["x-nosgrid-request"]
        seed = request_seed(rid)
        assert resp.headers["x-nosgrid-seed"] == str(seed)
        sent = w.engine.last_body
        assert sent["seed"] == seed and sent["temperature"] == 0.8 and sent["top_k"] == 40
        assert {"top_p", "min_p", "repeat_penalty"} <= set(sent)

        own = await _post(w, key, {"model": "fake", "messages": MSG, "max_tokens": 2,
                                   "seed": 1234, "temperature": 0})
        assert own.status_code == 200 and w.engine.last_body["seed"] == 1234
        assert w.engine.last_body["temperature"] == 0.0

        await _settled(w)
        w.gw.flush()
        with w.gw.coord.store.uow(write=False) as uow:
            rows = InferenceRepo(uow.conn).records_of(str(w.alice_kp.pubkey()))
            entries = [e for e in uow.ledger.entries() if e.kind == "gateway.usage"]
        assert len(rows) == 2 and {r["state"] for r in rows} == {RECORDED}
        assert len(entries) == 1
        billed = entries[0].meta["records"]
        assert sorted(r["hash"] for r in rows) == billed
        assert {r["entry"] for r in rows} == {entries[0].seq}
        for row in rows:
            raw = w.gw.coord.blobs.open(row["hash"]).read_bytes()
            assert hashlib.sha256(raw).hexdigest() == row["hash"]  # content-addressed
            rec = UsageRecord.from_bytes(raw)
            assert rec.node == w.node.pubkey and rec.replayable
            assert rec.request["seed"] == rec.seed
        by_seed = {UsageRecord.from_bytes(w.gw.coord.blobs.open(r["hash"]).read_bytes()).seed:
                   r for r in rows}
        mine = UsageRecord.from_bytes(w.gw.coord.blobs.open(by_seed[1234]["hash"]).read_bytes())
        assert mine.client_seed and mine.output == {"text": "w0 w1 ", "finish_reason": "length"}
        assert mine.usage == {"prompt_tokens": 3, "completion_tokens": 2}
        assert (await w.admin.ledger_verify()).ok


async def test_a_stream_is_recorded_with_the_text_delivered(tmp_path: Path) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)
        key = w.key()
        async with httpx.AsyncClient(base_url=w.url, timeout=30) as http, http.stream(
                "POST", "/openai/v1/chat/completions",
                json={"model": "fake", "messages": MSG, "max_tokens": 4, "stream": True},
                headers={"authorization": f"Bearer {key}"}) as resp:
            assert resp.status_code == 200
            _ = [line async for line in resp.aiter_lines()]
        await _settled(w)
        w.gw.flush()
        with w.gw.coord.store.uow(write=False) as uow:
            (row,) = InferenceRepo(uow.conn).records_of(str(w.alice_kp.pubkey()))
        rec = UsageRecord.from_bytes(w.gw.coord.blobs.open(row["hash"]).read_bytes())
        assert rec.output == {"text": "w0 w1 w2 w3 ", "finish_reason": "length"}
        assert rec.request["stream"] is True and rec.usage["completion_tokens"] == 4


async def test_an_out_of_range_sampler_field_is_a_400_and_costs_nothing(
        tmp_path: Path) -> None:
    async with gateway_world(tmp_path) as w:
        await w.add_replica(w.node)
        key = w.key()
        for field, value in (("temperature", 5), ("top_p", "x"), ("seed", -1),
                             ("top_k", 1.5)):
            resp = await _post(w, key, {"model": "fake", "messages": MSG, field: value})
            assert resp.status_code == 400, (field, resp.text)
            err = resp.json()["error"]
            assert err["param"] == field and err["type"] == "invalid_request_error"
        assert w.engine.calls == 0
        assert not any(b.reserved or b.pending for b in w.gw.meter.books.values())


async def test_recording_off_keeps_billing_and_writes_no_record(tmp_path: Path) -> None:
    async with gateway_world(tmp_path, record_requests=False) as w:
        await w.add_replica(w.node)
        resp = await _post(w, w.key(), {"model": "fake", "messages": MSG, "max_tokens": 2})
        assert resp.status_code == 200 and "seed" in w.engine.last_body
        await _settled(w)
        w.gw.flush()
        with w.gw.coord.store.uow(write=False) as uow:
            assert InferenceRepo(uow.conn).records_of(str(w.alice_kp.pubkey())) == []
        usage = (await w.alice.usage()).usage
        assert [(u.requests, u.completion_tokens) for u in usage] == [(1, 2)]


async def test_a_client_reads_its_own_records_and_no_one_elses(tmp_path: Path) -> None:
    import pytest

    from nosgrid.core.errors import InvalidInput, NotFound

    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)
        resp = await _post(w, w.key(), {"model": "fake", "messages": MSG, "max_tokens": 2})
        assert resp.status_code == 200
        await _settled(w)
        listed = (await w.alice.usage_records()).records
        assert len(listed) == 1 and listed[0].state == RECORDED and listed[0].entry
        rec = await w.alice.usage_record(listed[0].hash)
        assert rec["seed"] == int(resp.headers["x-nosgrid-seed"])
        assert UsageRecord.from_bytes(
            w.gw.coord.blobs.open(listed[0].hash).read_bytes()).as_dict() == rec
        assert (await w.node.usage_records()).records == []
        with pytest.raises(NotFound):
            await w.node.usage_record(listed[0].hash)
        with pytest.raises(InvalidInput):
            await w.alice.usage_record("not-a-hash")
        with pytest.raises(InvalidInput):
            await w.alice.usage_records(limit=0)
