"""Verifiable inference: reproducible gateway requests, their records, the audit decision
and the verdict of a seeded replay (pure rules; the replay itself runs on an auditor).

**Reproducible requests.** Every request to a deployed model gets a sampling seed derived
from its request id (:func:`request_seed`; a client's own ``seed`` is honoured and marked
``client_seed``) and the sampler's parameters are made explicit (:func:`explicit_sampler`),
so a replica has no default of its own to fall back on and an auditor can rerun the same
sampler with the same seed. What was asked and answered is a :class:`UsageRecord`,
content-addressed (:meth:`UsageRecord.digest`, sha256 of its canonical JSON); the usage
entry of the journal lists the record hashes it bills, so a record cannot change after
billing.

**The audit decision** is made after the record is billed, from a beacon the node cannot
know while answering (the hash of the journal entry after the usage entry, as for jobs):
``sha256("nosgrid-inference-audit" ‖ beacon ‖ record)`` against a rate per (node, model
digest) that starts high for newcomers and decays to a floor that is never 0
(:class:`InferenceAuditParams`).

**The verdict** (:func:`judge_replay`) reads the auditor's :class:`ReplayScore`: the
reference model, same files, same sampler and seed, re-samples each position of the claimed
output conditioned on the claimed prefix (teacher forcing: one divergence does not cascade),
and counts the positions where its pick differs from the claimed token. An honest replica
differs only where floating-point noise flips a near tie; a cheaper model, invented text or
an altered prompt differ at many positions. The auditor also recounts the tokens: a claim
above the recount is a fault of its own. Thresholds are calibrated by
``bench/inference_audit.py`` (``docs/verification.md``, "Inference").

>>> request_seed("req-1") == request_seed("req-1"), 0 < request_seed("req-1") < 2**31
(True, True)
>>> judge_replay(ReplayScore(positions=40, mismatches=0, prompt_tokens=12,
...                          completion_tokens=40), claimed_prompt=12, claimed_completion=40).fault
False
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from nosgrid.core.errors import InvalidInput
from nosgrid.core.verification.sampling import VerificationParams, _draw, audit_rates_bps

RECORD_VERSION: Final = 1
SEED_BITS: Final = 31  # llama.cpp takes a uint32 and treats 0xFFFFFFFF as "random"

#: request fields an auditor cannot replay on the same sampler (the request is served and
#: billed, but its record says ``replayable: false`` and it is never drawn for audit)
UNREPLAYABLE: Final = frozenset({"logit_bias", "grammar", "mirostat_mode", "tools",
                                 "functions", "response_format", "logprobs_processor"})


# --------------------------------------------------------------------- the sampler


def request_seed(request_id: str) -> int:
    """The sampling seed of a request: 31 bits of ``sha256("nosgrid-seed" ‖ request id)``,
    never 0 (a seed nobody chose but anyone can recompute)."""
    digest = hashlib.sha256(b"nosgrid-seed\x00" + request_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % ((1 << SEED_BITS) - 1) + 1


@dataclass(frozen=True, slots=True)
class SamplerParams:
    """The sampler every replica and every auditor runs for one request (llama.cpp's chain:
    penalties, top-k, typical, top-p, min-p, temperature, seeded draw; greedy at 0)."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int = 1

    def fields(self) -> dict[str, Any]:
        """The request fields that fix this sampler (what the gateway sends upstream)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "min_p": self.min_p, "repeat_penalty": self.repeat_penalty,
                "frequency_penalty": self.frequency_penalty,
                "presence_penalty": self.presence_penalty, "seed": self.seed}

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


_BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "min_p": (0.0, 1.0),
    "repeat_penalty": (0.0, 2.0), "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}


def explicit_sampler(body: Mapping[str, Any], *, request_id: str,
                     defaults: SamplerParams = SamplerParams()
                     ) -> tuple[SamplerParams, bool]:
    """The sampler of a request: the client's values where it gave them (checked), the
    market's defaults elsewhere, and a seed (the client's, else :func:`request_seed`).
    Returns (sampler, whether the seed is the client's). :class:`InvalidInput` names the
    field that is out of range.

    >>> s, own = explicit_sampler({"temperature": 0, "seed": 7}, request_id="r")
    >>> (s.temperature, s.seed, own)
    (0.0, 7, True)
    """
    values: dict[str, Any] = {}
    for name, (low, high) in _BOUNDS.items():
        given = body.get(name)
        if given is None:
            continue
        if isinstance(given, bool) or not isinstance(given, (int, float)) or not (
                low <= float(given) <= high) or math.isnan(float(given)):
            raise InvalidInput(f"'{name}' must be a number from {low:g} to {high:g}",
                               param=name)
        values[name] = float(given)
    top_k = body.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= 1_000:
            raise InvalidInput("'top_k' must be an integer from 0 to 1000", param="top_k")
        values["top_k"] = top_k
    seed = body.get("seed")
    own = seed is not None
    if own:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32 - 1:
            raise InvalidInput("'seed' must be an integer from 0 to 4294967294", param="seed")
    else:
        seed = request_seed(request_id)
    base = defaults.fields()
    base.update(values, seed=int(seed))
    return SamplerParams(**base), own


def replayable(body: Mapping[str, Any]) -> bool:
    """Can an auditor rerun this request on the same sampler? (one choice, no grammar, no
    logit bias, no tools: see :data:`UNREPLAYABLE`)"""
    n = body.get("n", 1)
    return n == 1 and not any(body.get(k) for k in UNREPLAYABLE)


# --------------------------------------------------------------------- the record


def canonical_json(value: Any) -> bytes:
    """The bytes a record is addressed by: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


@dataclass(frozen=True)
class UsageRecord:
    """One billed request as the gateway saw it, content-addressed.

    ``request`` is the body exactly as sent upstream (sampler fields explicit);
    ``output`` is the claimed text of choice 0 and its ``finish_reason``; ``usage`` the
    tokens billed; ``model_digest`` the digest of the model files the replica was deployed
    to serve (the node's claim an audit checks).
    """

    kid: str
    owner: str
    model: str
    model_digest: str
    node: str
    job: str
    kind: Literal["chat", "completions"]
    request: Mapping[str, Any]
    seed: int
    client_seed: bool
    output: Mapping[str, Any]
    usage: Mapping[str, int]
    at: int
    replayable: bool = True
    version: int = RECORD_VERSION
    _bytes: bytes = field(default=b"", init=False, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "kid": self.kid, "owner": self.owner,
                "model": self.model, "model_digest": self.model_digest, "node": self.node,
                "job": self.job, "kind": self.kind, "request": dict(self.request),
                "seed": self.seed, "client_seed": self.client_seed,
                "output": dict(self.output), "usage": dict(self.usage), "at": self.at,
                "replayable": self.replayable}

    def to_bytes(self) -> bytes:
        if not self._bytes:
            object.__setattr__(self, "_bytes", canonical_json(self.as_dict()))
        return self._bytes

    def digest(self) -> str:
        """sha256 of the canonical JSON: the record's address and the journal's reference."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UsageRecord:
        """Parse a stored record; :class:`InvalidInput` if it is not one."""
        try:
            d = json.loads(raw)
            return cls(kid=str(d["kid"]), owner=str(d["owner"]), model=str(d["model"]),
                       model_digest=str(d["model_digest"]), node=str(d["node"]),
                       job=str(d["job"]), kind=d["kind"], request=dict(d["request"]),
                       seed=int(d["seed"]), client_seed=bool(d["client_seed"]),
                       output=dict(d["output"]),
                       usage={k: int(v) for k, v in d["usage"].items()}, at=int(d["at"]),
                       replayable=bool(d["replayable"]), version=int(d["version"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"not a usage record: {exc}") from None


def records_root(hashes: list[str]) -> str:
    """One hash over a bill's record hashes (sorted): what a usage entry commits to.

    >>> records_root([]) == hashlib.sha256(b"").hexdigest()
    True
    """
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def model_digest(resources: list[Mapping[str, Any]]) -> str:
    """The digest of a deployment's model files: sha256 over the canonical JSON of its
    model resources (repo, revision, files, and each file's sha256 where pinned)."""
    return hashlib.sha256(canonical_json(sorted(
        (dict(r) for r in resources), key=lambda r: canonical_json(r)))).hexdigest()


# --------------------------------------------------------------------- the audit decision


@dataclass(frozen=True, slots=True)
class InferenceAuditParams:
    """Audit rate of gateway requests per (node, model digest), the replay's thresholds, and
    the batch an auditor replays.

    The rate follows the job audits' curve (``sampling.audit_rates_bps``) counted in clean
    audited *requests*: ``newcomer_rate_bps`` for the first ``probation`` requests, then
    the excess halves every ``half_life`` requests down to ``floor_rate_bps`` (never 0).

    **When cheating does not pay.** A node that serves a cheaper engine saves ``saving``
    per request (a fraction of the price it is paid). It is caught on a request with
    probability ``rate × detection``; when caught it loses the request's price (refunded
    to the client) and a slash. Cheating is unprofitable when::

        rate × detection × (price + slash) > saving

    :func:`model_swap_profit` is the expected profit per request; the simulator's
    ``model-swap`` strategy and ``nosgrid sim --json``'s ``max_model_swap_profit_nos`` use
    it with the detection rate measured by ``bench/inference_audit.py``.
    """

    newcomer_rate_bps: int = 2_000
    floor_rate_bps: int = 100
    probation: int = 200
    half_life: int = 500
    low_reputation: float = 0.4
    #: a replay differing at more than this share of positions (and at least
    #: ``min_mismatches``) is a fault; measured honest pairs never came near it
    max_mismatch_bps: int = 1_000
    min_mismatches: int = 2
    #: how many sampled records one audit job replays (lazy, batched)
    batch_size: int = 32
    #: a node's earnings for a request are held this long for its audit
    audit_window_s: int = 3_600
    #: records are kept this long, then pruned unless audited or disputed
    retention_s: int = 7 * 24 * 3_600

    def __post_init__(self) -> None:
        if not 0 < self.floor_rate_bps <= self.newcomer_rate_bps <= 10_000:
            raise InvalidInput("need 0 < floor_rate_bps <= newcomer_rate_bps <= 10000: the "
                               "inference audit rate is never zero")
        if self.probation < 0 or self.half_life <= 0 or self.batch_size < 1:
            raise InvalidInput("probation >= 0, half_life > 0 and batch_size >= 1")
        if not 0 <= self.max_mismatch_bps <= 10_000 or self.min_mismatches < 1:
            raise InvalidInput("max_mismatch_bps within 0..10000 and min_mismatches >= 1")
        if self.audit_window_s < 0 or self.retention_s < self.audit_window_s:
            raise InvalidInput("retention_s must be at least audit_window_s (>= 0): a "
                               "record must outlive its audit")

    def curve(self) -> VerificationParams:
        return VerificationParams(newcomer_rate_bps=self.newcomer_rate_bps,
                                  floor_rate_bps=self.floor_rate_bps,
                                  probation_jobs=self.probation,
                                  half_life_jobs=self.half_life,
                                  low_reputation=self.low_reputation)


DEFAULT_INFERENCE_AUDIT: Final = InferenceAuditParams()


def inference_audit_rate_bps(clean_requests: int, reputation: float = 0.5,
                             params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT) -> int:
    """The audit rate of one (node, model digest) with this many clean audited requests.

    >>> inference_audit_rate_bps(0), inference_audit_rate_bps(100_000)
    (2000, 100)
    """
    return int(audit_rates_bps([clean_requests], [reputation], params.curve())[0])


def should_audit_record(record_hash: str, beacon: str, rate_bps: int) -> bool:
    """Audit this record? ``sha256("nosgrid-inference-audit" ‖ beacon ‖ record)`` below the
    rate; the beacon is the hash of the journal entry after the one that billed it.

    >>> sum(should_audit_record(f"{i:064x}", "ab" * 32, 1_000) for i in range(1_000))
    102
    """
    if not 0 <= rate_bps <= 10_000:
        raise InvalidInput(f"rate_bps must be within 0..10000, got {rate_bps}")
    return (_draw(b"nosgrid-inference-audit", beacon, record_hash) * 10_000) >> 64 < rate_bps


# --------------------------------------------------------------------- the verdict


@dataclass(frozen=True, slots=True)
class ReplayScore:
    """What an auditor measured replaying one record under the reference model.

    ``positions``: claimed tokens scored; ``mismatches``: positions where the reference's
    seeded pick (conditioned on the claimed prefix) was not the claimed token;
    ``prompt_tokens``/``completion_tokens``: the auditor's recount; ``stop_ok``: the
    reference agrees the answer ended where it did (end of sequence or ``max_tokens``).
    """

    positions: int
    mismatches: int
    prompt_tokens: int
    completion_tokens: int
    stop_ok: bool = True

    @property
    def mismatch_bps(self) -> int:
        return 0 if self.positions == 0 else self.mismatches * 10_000 // self.positions


Fault = Literal["clean", "output_mismatch", "inflated_usage", "unreplayable"]


@dataclass(frozen=True, slots=True)
class InferenceVerdict:
    outcome: Fault
    reason: str

    @property
    def fault(self) -> bool:
        return self.outcome in ("output_mismatch", "inflated_usage")


def judge_replay(score: ReplayScore, *, claimed_prompt: int, claimed_completion: int,
                 params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT) -> InferenceVerdict:
    """The verdict on one audited request: inflated usage first (a claim above the
    auditor's recount), then the output (more than ``max_mismatch_bps`` of positions and at
    least ``min_mismatches`` differ, or the reference would not have stopped there: a
    truncated answer is a fault however well its prefix matches).

    >>> judge_replay(ReplayScore(40, 0, 12, 40), claimed_prompt=12,
    ...              claimed_completion=55).outcome
    'inflated_usage'
    >>> judge_replay(ReplayScore(40, 9, 12, 40), claimed_prompt=12,
    ...              claimed_completion=40).outcome
    'output_mismatch'
    """
    if claimed_prompt > score.prompt_tokens or claimed_completion > score.completion_tokens:
        return InferenceVerdict("inflated_usage",
                                f"billed {claimed_prompt}+{claimed_completion} tokens, the "
                                f"replay counts {score.prompt_tokens}+"
                                f"{score.completion_tokens}")
    if (score.mismatches >= params.min_mismatches
            and score.mismatch_bps > params.max_mismatch_bps):
        return InferenceVerdict("output_mismatch",
                                f"{score.mismatches} of {score.positions} tokens differ from "
                                "the reference model's seeded picks")
    if not score.stop_ok:
        return InferenceVerdict("output_mismatch",
                                "the answer stopped where the reference model would not "
                                "(truncated), or ran past where it would have stopped")
    return InferenceVerdict("clean", f"{score.mismatches} of {score.positions} tokens differ")


def requests_to_catch(detection: float, confidence: float = 0.99) -> int:
    """Audited requests needed to catch a cheater with ``confidence`` when each audit
    catches it with probability ``detection``.

    >>> requests_to_catch(0.95), requests_to_catch(0.5)
    (2, 7)
    """
    if not 0 < detection <= 1 or not 0 < confidence < 1:
        raise InvalidInput("detection within (0, 1] and confidence within (0, 1)")
    if detection >= 1:
        return 1
    return max(1, math.ceil(math.log(1 - confidence) / math.log(1 - detection)))


def model_swap_profit(*, price: int, saving_bps: int, rate_bps: int, detection: float,
                      slash: int) -> float:
    """Expected profit per request (base units) of a node that serves a cheaper engine,
    over serving honestly: it saves ``saving_bps`` of the price, and with probability
    ``rate × detection`` it is caught, refunds the price and is slashed (the slash is
    spread over the requests it serves until caught, at most once per detection).

    >>> model_swap_profit(price=100, saving_bps=5_000, rate_bps=100, detection=0.97,
    ...                   slash=100_000) < 0
    True
    """
    saving = price * saving_bps / 10_000
    caught = rate_bps / 10_000 * detection
    return saving - caught * (price + slash)


__all__ = [
    "DEFAULT_INFERENCE_AUDIT",
    "RECORD_VERSION",
    "UNREPLAYABLE",
    "InferenceAuditParams",
    "InferenceVerdict",
    "ReplayScore",
    "SamplerParams",
    "UsageRecord",
    "canonical_json",
    "explicit_sampler",
    "inference_audit_rate_bps",
    "judge_replay",
    "model_digest",
    "model_swap_profit",
    "records_root",
    "replayable",
    "request_seed",
    "requests_to_catch",
]
