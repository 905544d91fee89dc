"""Inference audits (issue 14): which billed gateway requests are audited, the batches an
auditor replays, and the verdicts on what it measured. One function per step, each inside
the caller's unit of work; the rules are in :mod:`nosgrid.core.verification.inference`.

1. :func:`decide` draws, for every billed record not decided yet, whether it is audited:
   it appends one ``inference.beacon`` journal entry after their usage entries (committing
   to the records it decides) and draws each record against that entry's hash at the rate
   of its (node, model digest). The node answered long before that hash existed.
2. :func:`batches` groups the sampled records by model digest into batches of
   ``batch_size`` and picks, for each, an auditor by the same verifiable draw and the same
   ``related`` rules as job audits, unrelated to every node whose records it replays.
3. :func:`apply_scores` turns an auditor's scores into verdicts (``judge_replay``): a fault
   is disputed before a tiebreak panel, and a unanimous panel slashes the node; a fault
   resets the (node, digest) record, so its audit rate climbs back to the newcomer rate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nosgrid.coordinator.services import economics
from nosgrid.core.errors import InvalidInput
from nosgrid.core.events import UsageBilled
from nosgrid.core.ledger import wallet
from nosgrid.core.metering import HeldRequest, settle_audit_holds
from nosgrid.core.slashing import Offence
from nosgrid.core.verification import Candidate, choose_auditor, choose_panel
from nosgrid.core.verification.inference import (
    DEFAULT_INFERENCE_AUDIT,
    InferenceAuditParams,
    InferenceVerdict,
    ReplayScore,
    UsageRecord,
    inference_audit_rate_bps,
    judge_replay,
    records_root,
    should_audit_record,
)
from nosgrid.store.db import UnitOfWork
from nosgrid.store.inference import CLEAN, DISPUTED, FAULTED, PASSED, SAMPLED, InferenceRepo

BEACON_ENTRY = "inference.beacon"
SETTLE_ENTRY = "gateway.audit_settled"


@dataclass(frozen=True)
class Decision:
    """What one :func:`decide` pass did: the beacon and the records it sampled."""

    beacon: str = ""
    decided: int = 0
    sampled: tuple[str, ...] = ()
    rates_bps: Mapping[str, int] = field(default_factory=dict)  # "node:digest" → rate


def decide(uow: UnitOfWork, now: int,
           params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT) -> Decision:
    """Draw the audit of every billed, undecided record (see the module docstring)."""
    repo = InferenceRepo(uow.conn)
    rows = repo.undecided()
    if not rows:
        return Decision()
    hashes = [str(r["hash"]) for r in rows]
    entry = uow.ledger.append(BEACON_ENTRY, "", now, (), {
        "records": len(hashes), "records_root": records_root(hashes),
        "entries": [int(min(r["entry"] for r in rows)), int(max(r["entry"] for r in rows))]})
    rates: dict[str, int] = {}
    sampled, passed = [], []
    for r in rows:
        pair = f"{r['node']}:{r['model_digest']}"
        if pair not in rates:
            rates[pair] = inference_audit_rate_bps(
                repo.clean_count(str(r["node"]), str(r["model_digest"])), params=params)
        if r["replayable"] and r["model_digest"] and should_audit_record(
                str(r["hash"]), entry.hash, rates[pair]):
            sampled.append(str(r["hash"]))
        else:
            passed.append(str(r["hash"]))
    repo.set_state(sampled, SAMPLED)
    repo.set_state(passed, PASSED)
    return Decision(entry.hash, len(rows), tuple(sampled), rates)


@dataclass(frozen=True)
class AuditBatch:
    """Sampled records of one model digest, for one auditor to replay in one job."""

    model_digest: str
    model: str
    auditor: str
    records: tuple[str, ...]
    nodes: frozenset[str]


def batches(uow: UnitOfWork, candidates: Sequence[Candidate], beacon: str,
            params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT) -> list[AuditBatch]:
    """The sampled records in batches of ``batch_size`` per model digest, each with an
    auditor unrelated to every audited node in it (none: the batch waits)."""
    rows = InferenceRepo(uow.conn).sampled()
    by_digest: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_digest.setdefault((str(r["model_digest"]), str(r["model"])), []).append(r)
    pool = {c.node_id: c for c in candidates}
    out = []
    for (digest, model), group in sorted(by_digest.items()):
        for i in range(0, len(group), params.batch_size):
            chunk = group[i:i + params.batch_size]
            nodes = frozenset(str(r["node"]) for r in chunk)
            audited = [pool.get(n, Candidate(n)) for n in sorted(nodes)]
            ids = tuple(str(r["hash"]) for r in chunk)
            pick = choose_auditor(records_root(list(ids)), beacon, audited[0],
                                  candidates, exclude=audited[1:],
                                  purpose="inference-audit")
            if pick is not None:
                out.append(AuditBatch(digest, model, pick.node_id, ids, nodes))
    return out


def _evidence(auditor: str, verdict: InferenceVerdict, score: ReplayScore) -> dict[str, Any]:
    return {"auditor": auditor, "outcome": verdict.outcome, "reason": verdict.reason,
            "score": {"positions": score.positions, "mismatches": score.mismatches,
                      "prompt_tokens": score.prompt_tokens,
                      "completion_tokens": score.completion_tokens,
                      "stop_ok": score.stop_ok}}


def apply_scores(uow: UnitOfWork, scores: Mapping[str, ReplayScore],
                 read_record: Callable[[str], UsageRecord],
                 params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT, *,
                 auditor: str = "", candidates: Sequence[Candidate] = (), beacon: str = "",
                 now: int = 0) -> dict[str, InferenceVerdict]:
    """Turn one auditor's scores (record hash → score) into verdicts, the dispute path of
    job audits applied to requests:

    - a sampled record the auditor finds clean is ``clean``; one it faults is
      ``disputed`` and gets a tiebreak panel (``choose_panel``: unrelated to the node and
      to the auditor), or, when the market has no independent tiebreaker, ``faulted``
      without a slash (the client is refunded; no one is punished on one opinion);
    - a disputed record takes the votes of its panel; once all are in, a **unanimous**
      fault makes it ``faulted`` and slashes the node (``WRONG_INFERENCE``, the record
      hashes and the usage entry that committed to them as evidence; strikes and jail as
      for jobs), any clean vote makes it ``clean``.

    Scores from anyone else, or for records not awaiting them, are ignored.
    """
    repo = InferenceRepo(uow.conn)
    out: dict[str, InferenceVerdict] = {}
    pool = {c.node_id: c for c in candidates}
    convicted: dict[str, list[tuple[str, int]]] = {}  # node → [(record, entry seq)]
    for record_hash, score in sorted(scores.items()):
        row = repo.record(record_hash)
        if row is None or row["state"] not in (SAMPLED, DISPUTED):
            continue
        rec = read_record(record_hash)
        verdict = judge_replay(score, claimed_prompt=int(rec.usage["prompt_tokens"]),
                               claimed_completion=int(rec.usage["completion_tokens"]),
                               params=params)
        if row["state"] == SAMPLED:
            case: dict[str, Any] = {**_evidence(auditor, verdict, score), "panel": [],
                                    "votes": {}}
            if not verdict.fault:
                repo.set_state([record_hash], CLEAN, json.dumps(case, sort_keys=True))
            else:
                node = str(row["node"])
                panel = choose_panel(record_hash, beacon or "00" * 32,
                                     pool.get(node, Candidate(node)),
                                     pool.get(auditor, Candidate(auditor or "-")), candidates)
                case["panel"] = [c.node_id for c in panel]
                if not panel:
                    case["reason"] += "; no independent tiebreaker: refunded, not slashed"
                repo.set_state([record_hash], DISPUTED if panel else FAULTED,
                               json.dumps(case, sort_keys=True))
            out[record_hash] = verdict
            continue
        case = json.loads(row["verdict"] or "{}")
        if auditor not in case.get("panel", ()) or auditor in case.get("votes", {}):
            continue
        case["votes"][auditor] = _evidence(auditor, verdict, score)
        out[record_hash] = verdict
        if len(case["votes"]) < len(case["panel"]):
            repo.set_state([record_hash], DISPUTED, json.dumps(case, sort_keys=True))
            continue
        unanimous = all(v["outcome"] != "clean" for v in case["votes"].values())
        case["decided"] = "faulted" if unanimous else "clean: the panel was not unanimous"
        repo.set_state([record_hash], FAULTED if unanimous else CLEAN,
                       json.dumps(case, sort_keys=True))
        if unanimous:
            convicted.setdefault(str(row["node"]), []).append((record_hash,
                                                               int(row["entry"])))
    for node, faulted in sorted(convicted.items()):
        entry = uow.ledger.entries(from_seq=min(seq for _h, seq in faulted), limit=1)
        economics.slash_for(uow, None, Offence.WRONG_INFERENCE, now,
                            journal_hash=entry[0].hash if entry else "", offender=node,
                            records=tuple(sorted(h for h, _s in faulted)))
    return out


def settle_holds(uow: UnitOfWork, now: int, *, fee_bps: int,
                 params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT) -> list[int]:
    """End the audit holds that are due (``gwaudit:<owner>:<node>``): a faulted request's
    cost back to its owner, the rest paid to the node and the treasury once its window
    ended. One entry per owner; a payout publishes ``UsageBilled`` (on Solana the tokens
    move then, from the owner's account, as for any usage payout). Returns the entries."""
    repo = InferenceRepo(uow.conn)
    rows = repo.held_due(now - params.audit_window_s)
    if not rows:
        return []
    held = [HeldRequest(str(r["hash"]), str(r["owner"]), str(r["node"]), int(r["cost"]),
                        refund=r["state"] == FAULTED) for r in rows]
    entries = []
    for owner, postings in settle_audit_holds(held, fee_bps=fee_bps).items():
        mine = [h for h in held if h.owner == owner]
        meta = {"records": sorted(h.record for h in mine),
                "refunded": sum(h.cost for h in mine if h.refund)}
        entry = uow.ledger.append(SETTLE_ENTRY, owner, now, postings, meta)
        if any(p.dst != wallet(owner) for p in postings):
            uow.publish(UsageBilled(at=now, entry=entry, owner=owner,
                                    requests=sum(not h.refund for h in mine), tokens=0))
        entries.append(entry.seq)
    repo.mark_settled([h.record for h in held], now)
    return entries


#: where an audit job finds its inputs and leaves its scores
AUDIT_SCRIPT, AUDIT_BATCH, AUDIT_SCORES = "/inputs/inference_replay.py", "/inputs/batch.json", \
    "/work/scores.json"


def audit_job_definition(batch: AuditBatch, deployment_spec: Mapping[str, Any], *,
                         script_sha256: str, batch_sha256: str, image: str,
                         market: str, timeout_s: int = 3_600) -> dict[str, Any]:
    """The job an auditor runs for one batch: the deployment's own model resources (the
    same files, so the same digest), the replay script and the batch as input blobs, the
    scores as its output. :class:`InvalidInput` if the deployment names no GGUF file.

    ``AUDIT_SCRIPT`` is ``node/executor/inference_replay.py`` uploaded as a blob; the batch
    is the JSON list of the sampled records (``UsageRecord.as_dict()`` plus ``hash``).
    """
    resources, model_path = [], ""
    for op in deployment_spec.get("ops") or []:
        for r in ((op.get("args") or {}).get("resources") or []):
            if not isinstance(r, dict):
                continue
            resources.append(dict(r))
            for f in r.get("files") or []:
                if not model_path and str(f).endswith(".gguf"):
                    model_path = f"{str(r.get('target', '')).rstrip('/')}/{f}"
    if not model_path:
        raise InvalidInput(f"the deployment of {batch.model!r} names no GGUF model file: "
                           "its requests cannot be replayed by llama.cpp")
    return {
        "version": "0.1", "type": "container",
        "meta": {"trigger": "inference-audit", "nosgrid": {
            "market": market, "timeout": timeout_s, "verification": "none",
            "inputs": [{"sha256": script_sha256, "path": AUDIT_SCRIPT},
                       {"sha256": batch_sha256, "path": AUDIT_BATCH}],
            "outputs": [AUDIT_SCORES]}},
        "ops": [{"type": "container/run", "id": "replay", "args": {
            "image": image, "resources": resources,
            "cmd": ["python3", AUDIT_SCRIPT, model_path, AUDIT_BATCH, AUDIT_SCORES]}}],
    }


def parse_scores(raw: bytes, expected: Sequence[str]) -> dict[str, ReplayScore]:
    """An audit job's output as scores per record; records it failed on (an ``error``
    entry) or did not return are left out, to be drawn into another batch.
    :class:`InvalidInput` when the output is not the script's JSON."""
    try:
        rows = json.loads(raw)
        if not isinstance(rows, list):
            raise TypeError("not a list")
        out = {}
        for r in rows:
            if not isinstance(r, dict) or "error" in r or r.get("hash") not in expected:
                continue
            out[str(r["hash"])] = ReplayScore(
                int(r["positions"]), int(r["mismatches"]), int(r["prompt_tokens"]),
                int(r["completion_tokens"]), bool(r["stop_ok"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"the audit job's scores are not the replay script's JSON: {exc}"
                           ) from None
    return out


def records_view(uow: UnitOfWork, owner: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The owner's own request records, with where each audit stands."""
    out = []
    for r in InferenceRepo(uow.conn).records_of(owner, limit=limit):
        verdict = json.loads(r["verdict"]) if r["verdict"] else None
        out.append({"hash": r["hash"], "model": r["model"], "node": r["node"],
                    "model_digest": r["model_digest"], "cost": int(r["cost"]),
                    "at": int(r["at"]), "entry": r["entry"], "state": r["state"],
                    "verdict": verdict})
    return out


__all__ = [
    "BEACON_ENTRY",
    "SETTLE_ENTRY",
    "AuditBatch",
    "Decision",
    "apply_scores",
    "audit_job_definition",
    "batches",
    "decide",
    "parse_scores",
    "records_view",
    "settle_holds",
]
