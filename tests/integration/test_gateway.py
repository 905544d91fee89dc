"""The gateway against a fake llama.cpp-shaped engine, with the official `openai` client."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
from gateway_fixtures import GatewayWorld, gateway_world
from solders.keypair import Keypair

from nosgrid.core.apikeys import issue_key
from nosgrid.core.ledger import TREASURY, wallet
from nosgrid.core.metering import hold_account
from nosgrid.sdk import solana as solana_wallet

MSG = [{"role": "user", "content": "one two three"}]


def client(w: GatewayWorld, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=w.url + "/openai/v1", api_key=key, max_retries=0)


def balances(w: GatewayWorld, *accounts: str) -> dict[str, int]:
    with w.gw.coord.store.uow(write=False) as uow:
        return {a: uow.ledger.balance(a) for a in accounts}


async def test_chat_stream_embeddings_and_exact_billing(tmp_path: Path) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        job = await w.add_replica(w.node)
        key = w.key()
        alice, node = str(w.alice_kp.pubkey()), w.node.pubkey
        before = balances(w, wallet(alice), wallet(node), TREASURY)
        oa = client(w, key)
        models = await oa.models.list()
        assert [m.id for m in models.data] == ["fake"]

        reply = await oa.chat.completions.create(model="fake", messages=MSG, max_tokens=5)
        assert reply.choices[0].message.content == "w0 w1 w2 w3 w4 "
        assert reply.usage is not None and reply.usage.completion_tokens == 5
        cost = 3 * 1 + 5 * 2

        stream = await oa.chat.completions.create(model="fake", messages=MSG, max_tokens=4,
                                                  stream=True,
                                                  stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert text == "w0 w1 w2 w3 "
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 4)
        cost += 3 + 4 * 2

        emb = await oa.embeddings.create(model="fake", input=["a b", "c"])
        assert len(emb.data) == 2 and len(emb.data[0].embedding) == 3
        cost += 3

        await _settled(w)
        w.gw.flush(release_all=True)
        after = balances(w, wallet(alice), wallet(node), TREASURY)
        assert before[wallet(alice)] - after[wallet(alice)] == cost
        fee = cost * w.gw.settings.fee_bps // 10_000
        assert after[wallet(node)] - before[wallet(node)] == cost - fee
        assert after[TREASURY] - before[TREASURY] == fee
        usage_rows = (await w.alice.usage()).usage
        assert [(r.model, r.requests, r.cost) for r in usage_rows] == [("fake", 3, cost)]
        assert (await w.admin.ledger_verify()).ok
        assert job in {r.job_id for r in w.gw.registry.replicas.values()}


async def _settled(w: GatewayWorld) -> None:
    deadline = time.monotonic() + 10
    while any(b.reserved for b in w.gw.meter.books.values()):
        assert time.monotonic() < deadline, "a request never settled"
        import asyncio
        await asyncio.sleep(0.02)


async def test_a_broken_stream_errors_and_bills_only_what_arrived(tmp_path: Path) -> None:
    async with gateway_world(tmp_path) as w:
        await w.add_replica(w.node)
        oa = client(w, w.key())
        w.engine.die_after = 3
        got = ""
        with pytest.raises(openai.APIError) as err:
            stream = await oa.chat.completions.create(model="fake", messages=MSG,
                                                      max_tokens=20, stream=True)
            async for chunk in stream:
                if chunk.choices:
                    got += chunk.choices[0].delta.content or ""
        assert "failed after 3 tokens" in str(err.value)
        assert got == "w0 w1 w2 "
        await _settled(w)
        w.gw.flush()
        rows = (await w.alice.usage()).usage
        assert rows[0].completion_tokens == 3
        assert rows[0].cost == 3 * 1 + 3 * 2  # prompt (3 words) + the 3 tokens delivered


async def test_retry_on_another_node_and_failed_requests_are_free(tmp_path: Path) -> None:
    async with gateway_world(tmp_path) as w:
        node2 = type(w.node)(w.url, Keypair())
        await node2.register_node({"cpu_cores": 2, "memory_mb": 4096}, ["cpu"])
        await w.add_replica(w.node, endpoint="http://127.0.0.1:9")  # nothing listens
        await w.add_replica(node2)
        oa = client(w, w.key())
        for _ in range(3):
            r = await oa.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
            assert r.choices[0].message.content == "w0 w1 "
        await _settled(w)
        w.gw.flush()
        rows = (await w.alice.usage()).usage
        assert rows[0].requests == 3 and rows[0].cost == 3 * (3 + 4)
        w.engine.status = 500
        with pytest.raises(openai.InternalServerError):
            await oa.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        w.gw.flush()
        assert (await w.alice.usage()).usage[0].requests == 3  # the failure is free
        await node2.aclose()


async def test_openai_shaped_errors(tmp_path: Path) -> None:
    async with gateway_world(tmp_path) as w:
        await w.add_replica(w.node)
        now = int(time.time())
        cases: list[tuple[str, type[openai.APIStatusError], str]] = [
            ("sk-not-ours", openai.AuthenticationError, "invalid_api_key"),
            (w.key(expires_at=now - 1), openai.AuthenticationError, "invalid_api_key"),
            (issue_key(Keypair(), cap=10, expires_at=now + 60, issued_at=now).replace(
                "ngk_", "ngk_x"), openai.AuthenticationError, "invalid_api_key"),
            (w.key(models=("other",)), openai.PermissionDeniedError, "model_not_allowed"),
            (w.key(cap=5), openai.RateLimitError, "insufficient_quota"),
        ]
        for key, exc, code in cases:
            with pytest.raises(exc) as err:
                await client(w, key).chat.completions.create(model="fake", messages=MSG,
                                                             max_tokens=2)
            assert err.value.code == code, (key, err.value.body)
        good = w.key()
        with pytest.raises(openai.NotFoundError) as nf:
            await client(w, good).chat.completions.create(model="nobody", messages=MSG)
        assert nf.value.code == "model_not_found"
        for body in (b"{", b"[]", b'{"model": "fake"}', b'{"model": "fake", "messages": []}',
                     b'{"model":"fake","messages":[{"role":"user","content":"x"}],'
                     b'"max_tokens":-1}'):
            async with httpx.AsyncClient() as h:
                r = await h.post(w.url + "/openai/v1/chat/completions", content=body,
                                 headers={"authorization": f"Bearer {good}"})
            assert r.status_code == 400, body
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        kid = w.gw.authorize(f"Bearer {good}", None).kid
        await w.alice.register_key(good, "test")
        assert kid in [k.kid for k in (await w.alice.keys()).keys]
        await w.alice.revoke_key(kid)
        with pytest.raises(openai.AuthenticationError) as rv:
            await client(w, good).chat.completions.create(model="fake", messages=MSG)
        assert "revoked" in str(rv.value)


async def test_insufficient_funds_is_a_429_and_wallet_never_negative(tmp_path: Path) -> None:
    async with gateway_world(tmp_path, topup_chunk=10**12) as w:
        await w.add_replica(w.node)
        poor = Keypair()
        now = int(time.time())
        key = issue_key(poor, cap=10**9, expires_at=now + 60, issued_at=now)
        with pytest.raises(openai.RateLimitError) as err:
            await client(w, key).chat.completions.create(model="fake", messages=MSG,
                                                         max_tokens=2)
        assert err.value.code == "insufficient_quota"
        alice = str(w.alice_kp.pubkey())
        before = balances(w, wallet(alice))[wallet(alice)]
        key = w.key(cap=before + 1)
        await client(w, key).chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        # the whole wallet went to the key's hold (chunk > balance): spending it elsewhere
        # between flushes is impossible, so a batched flush can never push it negative
        kid = w.gw.authorize(f"Bearer {key}", None).kid
        got = balances(w, wallet(alice), hold_account(kid, w.gw.worker))
        assert got == {wallet(alice): 0, hold_account(kid, w.gw.worker): before}


async def test_usage_is_paid_on_chain_from_the_key_owners_account(tmp_path: Path) -> None:
    """On Solana a key's hold is a reservation of its owner's allowance, and each flush is
    one payout from the owner's token account: the node's share and the treasury fee."""
    async with gateway_world(tmp_path, settlement="litesvm", flush_every=1000,
                             flush_interval_s=3600) as w:
        assert w.backend is not None and w.sender is not None
        s = w.backend.settlement
        await w.add_replica(w.node)
        alice, node = str(w.alice_kp.pubkey()), w.node.pubkey
        oa = client(w, w.key())
        reply = await oa.chat.completions.create(model="fake", messages=MSG, max_tokens=5)
        assert reply.usage is not None
        cost = 3 * 1 + 5 * 2
        await _settled(w)
        report = await solana_wallet.verify_onchain(w.alice)  # the hold is reserved
        assert report.ok, report.problems
        [row] = [r for r in report.accounts_checked if r.account == wallet(alice)]
        assert row.onchain == row.expected_onchain and row.reserved > 0, row
        w.gw.flush(release_all=True)
        alice_before = (await s.balances([s.token_account(alice)]))[s.token_account(alice)]
        stats = await w.sender.pass_once()
        assert stats.failed == 0, stats.errors
        fee = cost * w.gw.settings.fee_bps // 10_000
        assert (await s.balances([s.token_account(node)]))[s.token_account(node)] == cost - fee
        alice_after = (await s.balances([s.token_account(alice)]))[s.token_account(alice)]
        assert alice_before - alice_after == cost
        report = await solana_wallet.verify_onchain(w.alice)
        assert report.ok, report.problems
