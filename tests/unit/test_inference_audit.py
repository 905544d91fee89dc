"""The rules of verifiable inference (issue 14): seeds, explicit samplers, records, the
audit draw and rate, the replay verdict, and when a model swap does not pay."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.errors import InvalidInput
from nosgrid.core.metering import Charge, bill
from nosgrid.core.verification.inference import (
    DEFAULT_INFERENCE_AUDIT,
    InferenceAuditParams,
    ReplayScore,
    SamplerParams,
    UsageRecord,
    explicit_sampler,
    inference_audit_rate_bps,
    judge_replay,
    model_swap_profit,
    replayable,
    request_seed,
    requests_to_catch,
    should_audit_record,
)


def _record(**kw: object) -> UsageRecord:
    args: dict[str, object] = dict(
        kid="k1", owner="alice", model="smollm2", model_digest="d" * 64, node="n1",
        job="j1", kind="chat", request={"messages": [{"role": "user", "content": "hi"}],
                                        "seed": 5, "temperature": 0.8},
        seed=5, client_seed=False, output={"text": "hello", "finish_reason": "stop"},
        usage={"prompt_tokens": 3, "completion_tokens": 2}, at=100)
    args.update(kw)
    return UsageRecord(**args)  # type: ignore[arg-type]


def test_seeds_are_derived_reproducibly_and_differ_between_requests() -> None:
    seeds = {request_seed(f"req_{i}") for i in range(1_000)}
    assert len(seeds) == 1_000 and all(0 < s < 2**31 for s in seeds)
    assert request_seed("req_x") == request_seed("req_x")


def test_the_sampler_is_explicit_and_a_client_seed_is_honoured() -> None:
    s, own = explicit_sampler({}, request_id="req_1")
    assert not own and s == SamplerParams(seed=request_seed("req_1"))
    assert set(s.fields()) == {"temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                               "frequency_penalty", "presence_penalty", "seed"}
    s, own = explicit_sampler({"seed": 0, "temperature": 0, "top_k": 1}, request_id="r")
    assert own and (s.seed, s.temperature, s.top_k, s.greedy) == (0, 0.0, 1, True)


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", -0.1), ("temperature", 2.5), ("temperature", True), ("top_p", "0.9"),
    ("top_p", float("nan")), ("top_k", 2.0), ("top_k", -1), ("seed", -1), ("seed", 2**32),
    ("seed", "7"), ("min_p", 1.5), ("repeat_penalty", 3)])
def test_an_out_of_range_sampler_field_names_itself(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        explicit_sampler({field: value}, request_id="r")
    assert err.value.details["param"] == field


def test_unreplayable_requests_are_recognised() -> None:
    assert replayable({"messages": []})
    assert not replayable({"n": 2}) and not replayable({"logit_bias": {"1": 5}})
    assert not replayable({"tools": [{"type": "function"}]})


def test_a_record_is_content_addressed_and_round_trips() -> None:
    rec = _record()
    assert rec.digest() == hashlib.sha256(rec.to_bytes()).hexdigest()
    assert UsageRecord.from_bytes(rec.to_bytes()) == rec
    assert _record(usage={"prompt_tokens": 3, "completion_tokens": 3}).digest() != rec.digest()
    assert _record(output={"text": "hellp", "finish_reason": "stop"}).digest() != rec.digest()
    with pytest.raises(InvalidInput):
        UsageRecord.from_bytes(b'{"kid": 1}')


def test_the_usage_entry_carries_the_hashes_of_the_records_it_bills() -> None:
    charges = [Charge("k1", "alice", "m", "n1", 3, 2, 7, "b" * 64),
               Charge("k1", "alice", "m", "n1", 3, 2, 7, "a" * 64),
               Charge("k2", "bob", "m", "n1", 1, 1, 3, ""),
               Charge("k2", "bob", "m", "n1", 1, 1, 3, "c" * 64)]
    paid = bill(charges, fee_bps=1_000, worker="w")
    assert paid.meta("alice") == {"requests": 2, "tokens": 10,
                                  "records": ["a" * 64, "b" * 64]}
    assert paid.meta("bob")["records"] == ["c" * 64]
    assert "records" not in bill(charges[2:3], fee_bps=0, worker="w").meta("bob")


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_the_audit_rate_never_reaches_zero_and_falls_with_clean_requests(a: int, b: int
                                                                        ) -> None:
    lo, hi = sorted((a, b))
    p = DEFAULT_INFERENCE_AUDIT
    assert p.floor_rate_bps <= inference_audit_rate_bps(hi) <= inference_audit_rate_bps(lo)
    assert inference_audit_rate_bps(lo) <= p.newcomer_rate_bps
    assert inference_audit_rate_bps(hi, reputation=0.1) == p.newcomer_rate_bps


def test_params_refuse_a_zero_floor_and_a_retention_shorter_than_the_window() -> None:
    with pytest.raises(InvalidInput):
        InferenceAuditParams(floor_rate_bps=0)
    with pytest.raises(InvalidInput):
        InferenceAuditParams(audit_window_s=100, retention_s=50)


def test_the_audit_draw_follows_the_rate_and_the_beacon() -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4_000)]
    drawn = sum(should_audit_record(h, "ab" * 32, 500) for h in hashes)
    assert 130 < drawn < 270  # 5 % of 4,000 = 200
    other = {h for h in hashes if should_audit_record(h, "cd" * 32, 500)}
    assert other != {h for h in hashes if should_audit_record(h, "ab" * 32, 500)}
    assert all(should_audit_record(h, "ab" * 32, 10_000) for h in hashes[:50])
    with pytest.raises(InvalidInput):
        should_audit_record(hashes[0], "not-a-beacon", 500)


@pytest.mark.parametrize(("score", "claimed", "outcome"), [
    (ReplayScore(40, 0, 12, 40), (12, 40), "clean"),
    (ReplayScore(40, 1, 12, 40), (12, 40), "clean"),  # one near tie is noise
    (ReplayScore(10, 1, 12, 10), (12, 10), "clean"),  # below min_mismatches
    (ReplayScore(40, 5, 12, 40), (12, 40), "output_mismatch"),
    (ReplayScore(40, 0, 12, 40, stop_ok=False), (12, 40), "output_mismatch"),
    (ReplayScore(40, 0, 12, 40), (13, 40), "inflated_usage"),
    (ReplayScore(40, 0, 12, 40), (12, 41), "inflated_usage"),
    (ReplayScore(40, 0, 12, 40), (10, 30), "clean"),  # under-billing harms only the node
])
def test_the_replay_verdict(score: ReplayScore, claimed: tuple[int, int], outcome: str
                            ) -> None:
    v = judge_replay(score, claimed_prompt=claimed[0], claimed_completion=claimed[1])
    assert v.outcome == outcome and v.fault == (outcome != "clean") and v.reason


def test_requests_to_catch_and_the_model_swap_condition() -> None:
    assert requests_to_catch(1.0) == 1 and requests_to_catch(0.9) == 2
    assert requests_to_catch(0.1) == 44
    # at the floor rate a swap saving half the price is unprofitable with a 100 NOS slash
    assert model_swap_profit(price=200, saving_bps=5_000, rate_bps=100, detection=0.97,
                             slash=100_000_000) < 0
    # … and profitable without one: the slash is what makes the floor enough
    assert model_swap_profit(price=200, saving_bps=5_000, rate_bps=100, detection=0.97,
                             slash=0) > 0


# ---------------------------------------------------------------- the money of audit holds

_charge = st.builds(
    Charge, kid=st.sampled_from(["k1", "k2", "k3"]), owner=st.just(""),
    model=st.just("m"), node=st.sampled_from(["n1", "n2"]),
    prompt_tokens=st.integers(0, 50), completion_tokens=st.integers(0, 50),
    cost=st.integers(0, 10_000), record=st.text("abcdef0123456789", min_size=8, max_size=8))


@given(st.lists(_charge, max_size=30), st.integers(0, 10_000), st.data())
def test_held_plus_paid_plus_refunded_is_what_was_metered(charges: list[Charge],
                                                          fee_bps: int,
                                                          data: st.DataObject) -> None:
    from nosgrid.core.ledger import Posting, balance_deltas
    from nosgrid.core.metering import HeldRequest, hold_account, settle_audit_holds

    owners = {"k1": "alice", "k2": "alice", "k3": "bob"}
    charges = [Charge(c.kid, owners[c.kid], c.model, c.node, c.prompt_tokens,
                      c.completion_tokens, c.cost, f"{i:04d}{c.record}")
               for i, c in enumerate(charges)]
    metered = sum(c.cost for c in charges)
    paid = bill(charges, fee_bps=fee_bps, worker="w", audit_hold=True)
    flush: list[Posting] = [p for ps in paid.postings.values() for p in ps]
    held = balance_deltas(flush)
    assert all(not a.startswith(("wallet:", "treasury")) for a in held if held[a] > 0)
    assert sum(v for a, v in held.items() if a.startswith("gwaudit:")) == metered
    assert -sum(v for a, v in held.items() if a.startswith("gwhold:")) == metered
    refunds = data.draw(st.lists(st.booleans(), min_size=len(charges),
                                 max_size=len(charges)))
    ends = settle_audit_holds([HeldRequest(c.record, c.owner, c.node, c.cost, refund=r)
                               for c, r in zip(charges, refunds, strict=True)],
                              fee_bps=fee_bps)
    after = balance_deltas(flush + [p for ps in ends.values() for p in ps])
    assert all(v == 0 for a, v in after.items() if a.startswith("gwaudit:"))  # all ended
    refunded = sum(c.cost for c, r in zip(charges, refunds, strict=True) if r)
    to_nodes = sum(v for a, v in after.items() if a in ("wallet:n1", "wallet:n2"))
    to_owners = sum(v for a, v in after.items() if a in ("wallet:alice", "wallet:bob"))
    assert to_owners == refunded
    assert to_nodes + after.get("treasury", 0) + refunded == metered
    assert all(after.get(hold_account(k, "w"), 0) <= 0 for k in owners)


def test_an_audit_batch_becomes_a_valid_job_and_its_output_scores() -> None:
    import json

    from nosgrid.coordinator.services.inference_audits import (
        AUDIT_SCRIPT,
        AuditBatch,
        audit_job_definition,
        parse_scores,
    )
    from nosgrid.core.jobs.load import parse_job_definition

    spec = {"ops": [{"args": {"resources": [{
        "type": "HF", "repo": "nosgrid/smollm2-135m-instruct-gguf",
        "files": ["SmolLM2-135M-Instruct.Q4_1.gguf"], "target": "/models/smollm2"}]}}]}
    batch = AuditBatch("d" * 64, "smollm2", "auditor", ("a" * 64, "b" * 64),
                       frozenset({"n1"}))
    job = audit_job_definition(batch, spec, script_sha256="1" * 64, batch_sha256="2" * 64,
                               image="localhost/nosgrid-llama:cpu", market="cpu")
    parse_job_definition(job)  # a job every node runs as usual
    cmd = job["ops"][0]["args"]["cmd"]
    assert cmd[:3] == ["python3", AUDIT_SCRIPT,
                       "/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert job["ops"][0]["args"]["resources"] == spec["ops"][0]["args"]["resources"]
    with pytest.raises(InvalidInput):
        audit_job_definition(batch, {"ops": []}, script_sha256="1" * 64,
                             batch_sha256="2" * 64, image="x", market="cpu")
    raw = json.dumps([{"hash": "a" * 64, "positions": 9, "mismatches": 0,
                       "prompt_tokens": 5, "completion_tokens": 9, "stop_ok": True},
                      {"hash": "b" * 64, "error": "ValueError: boom"},
                      {"hash": "c" * 64, "positions": 1, "mismatches": 1,
                       "prompt_tokens": 1, "completion_tokens": 1, "stop_ok": True}]).encode()
    assert parse_scores(raw, batch.records) == {"a" * 64: ReplayScore(9, 0, 5, 9, True)}
    with pytest.raises(InvalidInput):
        parse_scores(b"{}", batch.records)
    with pytest.raises(InvalidInput):
        parse_scores(b'[{"hash": "' + b"a" * 64 + b'"}]', batch.records)
