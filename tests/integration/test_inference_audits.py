"""The audit decision and verdicts on real SQLite, behind the real gateway (issue 14):
the beacon entry comes after the usage entry, the draw follows the (node, digest) rate,
scores become verdicts with their evidence, and a client reads its own records."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from gateway_fixtures import GatewayWorld, gateway_world

from nosgrid.coordinator.services import inference_audits
from nosgrid.core.verification import DEFAULT_VERIFICATION, Candidate
from nosgrid.core.verification.inference import (
    InferenceAuditParams,
    ReplayScore,
    records_root,
)
from nosgrid.store.inference import CLEAN, DISPUTED, FAULTED, PASSED, SAMPLED, InferenceRepo

MSG = [{"role": "user", "content": "one two three"}]
ALWAYS = InferenceAuditParams(newcomer_rate_bps=10_000, floor_rate_bps=10_000, batch_size=2)
ALWAYS_PANEL = DEFAULT_VERIFICATION.tiebreakers


async def _traffic(w: GatewayWorld, n: int) -> None:
    key = w.key()
    async with httpx.AsyncClient(base_url=w.url, timeout=30) as http:
        for i in range(n):
            r = await http.post("/openai/v1/chat/completions", headers={
                "authorization": f"Bearer {key}"}, json={"model": "fake", "messages": MSG,
                                                       "max_tokens": 2 + i})
            assert r.status_code == 200
    deadline = time.monotonic() + 10
    while any(b.reserved for b in w.gw.meter.books.values()) or w.gw.recorder.pending:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
        w.gw.save_charges()
    w.gw.flush()


async def _digest_deployment(w: GatewayWorld) -> None:
    """A deployment of the model whose service job names model files: its digest is what
    the replicas' records claim."""
    from gateway_fixtures import SERVICE_SPEC
    spec = json.loads(json.dumps(SERVICE_SPEC))
    spec["ops"][0]["args"]["resources"] = [{"type": "HF", "repo": "nosgrid/smollm2",
                                            "files": ["m.gguf"], "target": "/models"}]
    await w.alice.deploy("fake", spec, market="cpu", min=0, max=1)
    assert w.gw.recorder.digest(w.gw.deployments["fake"])


async def test_the_draw_comes_after_billing_and_scores_become_verdicts(tmp_path: Path
                                                                       ) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)
        await _digest_deployment(w)
        await _traffic(w, 3)
        store = w.gw.coord.store
        with store.uow() as uow:
            usage_seq = max(e.seq for e in uow.ledger.entries() if e.kind == "gateway.usage")
            decision = inference_audits.decide(uow, int(time.time()), ALWAYS)
            uow.commit()
        assert decision.decided == 3 and len(decision.sampled) == 3
        with store.uow(write=False) as uow:
            beacon = [e for e in uow.ledger.entries() if e.kind == "inference.beacon"]
            rows = InferenceRepo(uow.conn).records_of(str(w.alice_kp.pubkey()))
        assert len(beacon) == 1 and beacon[0].seq > usage_seq  # unknown while answering
        assert beacon[0].hash == decision.beacon
        assert beacon[0].meta["records_root"] == records_root([r["hash"] for r in rows])
        assert {r["state"] for r in rows} == {SAMPLED}

        with store.uow() as uow:  # a second pass has nothing left to decide
            assert inference_audits.decide(uow, int(time.time()), ALWAYS).decided == 0

        auditors = [Candidate("auditor-a", clean_jobs=500, reputation=0.9),
                    Candidate(w.node.pubkey, clean_jobs=500, reputation=0.9)]
        with store.uow(write=False) as uow:
            batches = inference_audits.batches(uow, auditors, decision.beacon, ALWAYS)
        assert [len(b.records) for b in batches] == [2, 1]
        assert {b.auditor for b in batches} == {"auditor-a"}  # never the audited node

        honest, inflated, *_ = sorted(decision.sampled)
        rec = w.gw.recorder.read(honest)
        p, c = rec.usage["prompt_tokens"], rec.usage["completion_tokens"]
        rec2 = w.gw.recorder.read(inflated)
        scores = {honest: ReplayScore(c, 0, p, c),
                  inflated: ReplayScore(rec2.usage["completion_tokens"], 0,
                                        rec2.usage["prompt_tokens"],
                                        rec2.usage["completion_tokens"] - 1)}
        with store.uow() as uow:
            verdicts = inference_audits.apply_scores(uow, scores, w.gw.recorder.read, ALWAYS)
            uow.commit()
        assert verdicts[honest].outcome == "clean"
        assert verdicts[inflated].outcome == "inflated_usage"
        with store.uow(write=False) as uow:
            view = {r["hash"]: r for r in inference_audits.records_view(
                uow, str(w.alice_kp.pubkey()))}
            repo = InferenceRepo(uow.conn)
            assert repo.clean_count(w.node.pubkey, rec.model_digest) == 0  # fault after it
        assert view[honest]["state"] == CLEAN and view[inflated]["state"] == FAULTED
        assert view[inflated]["verdict"]["outcome"] == "inflated_usage"
        assert view[inflated]["verdict"]["score"]["completion_tokens"] == (
            rec2.usage["completion_tokens"] - 1)
        assert (await w.admin.ledger_verify()).ok


async def test_records_without_a_model_digest_are_never_drawn(tmp_path: Path) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)  # a replica of no deployment: no digest to check
        await _traffic(w, 2)
        with w.gw.coord.store.uow() as uow:
            decision = inference_audits.decide(uow, int(time.time()), ALWAYS)
            uow.commit()
            states = {r["state"] for r in InferenceRepo(uow.conn).records_of(
                str(w.alice_kp.pubkey()))}
        assert decision.decided == 2 and decision.sampled == () and states == {PASSED}


async def test_earnings_are_held_refunded_on_a_failed_audit_and_paid_after_the_window(
        tmp_path: Path) -> None:
    from nosgrid.core.ledger import TREASURY, gateway_audit_hold, wallet

    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600,
                             audit_hold=True) as w:
        await w.add_replica(w.node)
        await _digest_deployment(w)
        alice, node = str(w.alice_kp.pubkey()), w.node.pubkey
        store = w.gw.coord.store

        def balances() -> dict[str, int]:
            with store.uow(write=False) as uow:
                return {a: uow.ledger.balance(a) for a in (
                    wallet(alice), wallet(node), TREASURY, gateway_audit_hold(alice, node))}

        before = balances()
        await _traffic(w, 3)
        w.gw.flush(release_all=True)
        held = balances()
        metered = before[wallet(alice)] - held[wallet(alice)]
        assert metered > 0 and held[gateway_audit_hold(alice, node)] == metered
        assert held[wallet(node)] == before[wallet(node)]  # nothing paid yet
        with store.uow() as uow:
            decision = inference_audits.decide(uow, int(time.time()), ALWAYS)
            uow.commit()
        cheat, *honest = sorted(decision.sampled)
        scores = {}
        for h in decision.sampled:
            rec = w.gw.recorder.read(h)
            p, c = rec.usage["prompt_tokens"], rec.usage["completion_tokens"]
            scores[h] = ReplayScore(c, c if h == cheat else 0, p, c)
        with store.uow() as uow:
            inference_audits.apply_scores(uow, scores, w.gw.recorder.read, ALWAYS)
            # inside the window only the faulted request settles: its refund
            inference_audits.settle_holds(uow, int(time.time()), fee_bps=w.gw.settings.fee_bps,
                                          params=ALWAYS)
            uow.commit()
        with store.uow(write=False) as uow:
            costs = {r["hash"]: int(r["cost"]) for r in InferenceRepo(uow.conn).records_of(
                alice)}
        mid = balances()
        assert mid[wallet(alice)] == held[wallet(alice)] + costs[cheat]
        assert mid[wallet(node)] == before[wallet(node)]
        later = int(time.time()) + ALWAYS.audit_window_s + 1
        with store.uow() as uow:
            assert inference_audits.settle_holds(uow, later, fee_bps=w.gw.settings.fee_bps,
                                                 params=ALWAYS)
            assert inference_audits.settle_holds(uow, later, fee_bps=w.gw.settings.fee_bps,
                                                 params=ALWAYS) == []  # once only
            uow.commit()
        end = balances()
        paid = sum(costs[h] for h in honest)
        fee = paid * w.gw.settings.fee_bps // 10_000
        assert end[gateway_audit_hold(alice, node)] == 0
        assert end[wallet(node)] - before[wallet(node)] == paid - fee
        assert end[TREASURY] - before[TREASURY] == fee
        assert before[wallet(alice)] - end[wallet(alice)] == paid  # the cheat was refunded
        assert (await w.admin.ledger_verify()).ok


async def test_a_fault_goes_to_a_panel_and_only_a_unanimous_one_slashes(tmp_path: Path
                                                                        ) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)
        await _digest_deployment(w)
        await _traffic(w, 2)
        store, node = w.gw.coord.store, w.node.pubkey
        with store.uow() as uow:
            decision = inference_audits.decide(uow, int(time.time()), ALWAYS)
            uow.commit()
        first, second = sorted(decision.sampled)
        pool = [Candidate(f"auditor-{i}", clean_jobs=500, reputation=0.9) for i in range(6)]
        pool.append(Candidate(node, clean_jobs=500, reputation=0.9))

        def bad(h: str) -> ReplayScore:
            c = w.gw.recorder.read(h).usage["completion_tokens"]
            return ReplayScore(c, c, w.gw.recorder.read(h).usage["prompt_tokens"], c)

        def good(h: str) -> ReplayScore:
            u = w.gw.recorder.read(h).usage
            return ReplayScore(u["completion_tokens"], 0, u["prompt_tokens"],
                               u["completion_tokens"])

        def apply(auditor: str, scores: dict[str, ReplayScore]) -> None:
            with store.uow() as uow:
                inference_audits.apply_scores(uow, scores, w.gw.recorder.read, ALWAYS,
                                              auditor=auditor, candidates=pool,
                                              beacon=decision.beacon, now=int(time.time()))
                uow.commit()

        def case(h: str) -> dict[str, object]:
            with store.uow(write=False) as uow:
                row = InferenceRepo(uow.conn).record(h)
            assert row is not None
            return {"state": row["state"], **json.loads(row["verdict"])}

        apply("auditor-0", {first: bad(first), second: bad(second)})
        c1, c2 = case(first), case(second)
        assert c1["state"] == c2["state"] == DISPUTED
        panel1, panel2 = list(c1["panel"]), list(c2["panel"])  # type: ignore[call-overload]
        assert len(panel1) == ALWAYS_PANEL and node not in panel1 and "auditor-0" not in panel1
        apply(node, {first: good(first)})  # not on the panel: ignored
        assert case(first)["votes"] == {}
        for member in panel1:
            apply(member, {first: bad(first)})
        for i, member in enumerate(panel2):
            apply(member, {second: good(second) if i == 0 else bad(second)})
        assert case(first)["state"] == FAULTED and case(second)["state"] == CLEAN
        with store.uow(write=False) as uow:
            history = uow.economics.offences(node)
            slashes = [e for e in uow.ledger.entries() if e.kind == "slash"]
        assert history.offences == 1  # one unanimous panel, one offence
        assert all(e.meta.get("records") == [first] for e in slashes)
        assert (await w.admin.ledger_verify()).ok


async def test_records_past_retention_are_pruned_unless_an_audit_needs_them(
        tmp_path: Path) -> None:
    async with gateway_world(tmp_path, flush_every=1000, flush_interval_s=3600) as w:
        await w.add_replica(w.node)
        await _digest_deployment(w)
        await _traffic(w, 2)
        store, alice = w.gw.coord.store, str(w.alice_kp.pubkey())
        with store.uow() as uow:
            decision = inference_audits.decide(uow, int(time.time()), ALWAYS)
            uow.commit()
        kept = decision.sampled[0]
        with store.uow() as uow:  # one verdict in: clean, so no audit needs it any more
            u = w.gw.recorder.read(decision.sampled[1]).usage
            inference_audits.apply_scores(uow, {decision.sampled[1]: ReplayScore(
                u["completion_tokens"], 0, u["prompt_tokens"], u["completion_tokens"])},
                w.gw.recorder.read, ALWAYS)
            uow.commit()
        later = int(time.time()) + ALWAYS.retention_s + 1
        with store.uow() as uow:
            gone = w.gw.recorder.prune(uow, later)
            uow.commit()
        w.gw.recorder.forget(gone)
        assert gone == [decision.sampled[1]]
        assert not w.gw.coord.blobs.exists(gone[0])
        with store.uow(write=False) as uow:
            left = [r["hash"] for r in InferenceRepo(uow.conn).records_of(alice)]
        assert left == [kept] and w.gw.coord.blobs.exists(kept)  # sampled: still evidence
