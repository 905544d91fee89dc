"""The gateway's usage records (issue 14): what each chat or completion request asked of
which node and model files, with which seed, and what it answered.

The hot path only builds the record and hashes it (tens of µs); the blob and its row are
written with the request's charge, in the batch that writes charges (``save_charges`` and
``flush`` in ``billing.py``), so a crash loses a record only together with its charge.
Old records are pruned after ``InferenceAuditParams.retention_s`` unless an audit still
needs them (``store/inference.py``).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nosgrid.coordinator.blobs import BlobStore
from nosgrid.core.metering import Charge
from nosgrid.core.verification.inference import (
    SamplerParams,
    UsageRecord,
    explicit_sampler,
    model_digest,
    replayable,
)
from nosgrid.store.db import UnitOfWork
from nosgrid.store.gateway import Deployment
from nosgrid.store.inference import InferenceRepo

log = logging.getLogger(__name__)


def new_request_id() -> str:
    """A request's id, returned as ``x-nosgrid-request``; the seed derives from it."""
    return "req_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Trace:
    """A request on its way: its id, the body as sent upstream and its sampler."""

    request_id: str
    kind: str
    body: Mapping[str, Any]
    sampler: SamplerParams
    client_seed: bool


def deployment_digest(d: Deployment | None) -> str:
    """The digest of the model files a deployment's replicas must serve (its resources)."""
    if d is None:
        return ""
    try:
        spec = json.loads(d.spec)
    except ValueError:
        return ""
    resources: list[Mapping[str, Any]] = []
    for op in spec.get("ops") or []:
        for r in ((op.get("args") or {}).get("resources") or []):
            if isinstance(r, dict):
                resources.append({k: v for k, v in r.items() if k != "accessToken"})
    return model_digest(resources) if resources else ""


class Recorder:
    """Builds records, keeps them until their charges are written, writes and prunes them."""

    def __init__(self, blobs: BlobStore, *, enabled: bool = True,
                 defaults: SamplerParams | None = None) -> None:
        self.blobs = blobs
        self.enabled = enabled
        self.defaults = defaults or SamplerParams()
        self.pending: dict[str, UsageRecord] = {}
        self._digests: dict[tuple[str, str], str] = {}

    def start(self, body: dict[str, Any], kind: str) -> Trace:
        """Make the sampler explicit in ``body`` (in place) and give the request its id
        and seed; :class:`~nosgrid.core.errors.InvalidInput` for an out-of-range field."""
        request_id = new_request_id()
        sampler, own = explicit_sampler(body, request_id=request_id, defaults=self.defaults)
        body.update(sampler.fields())
        return Trace(request_id, kind, body, sampler, own)

    def digest(self, d: Deployment | None) -> str:
        if d is None:
            return ""
        key = (d.model, d.spec)
        if key not in self._digests:
            self._digests[key] = deployment_digest(d)
        return self._digests[key]

    def record(self, trace: Trace, *, kid: str, owner: str, model: str, digest: str,
               node: str, job: str, output: Mapping[str, Any], prompt_tokens: int,
               completion_tokens: int, at: int) -> tuple[str, UsageRecord] | None:
        """The request's record and its hash (None when recording is off)."""
        if not self.enabled:
            return None
        rec = UsageRecord(kid=kid, owner=owner, model=model, model_digest=digest, node=node,
                          job=job, kind="chat" if trace.kind == "chat" else "completions",
                          request=trace.body, seed=trace.sampler.seed,
                          client_seed=trace.client_seed, output=output,
                          usage={"prompt_tokens": prompt_tokens,
                                 "completion_tokens": completion_tokens},
                          at=at, replayable=replayable(trace.body))
        return rec.digest(), rec

    def keep(self, record_hash: str, rec: UsageRecord) -> None:
        """Hold the record until its charge is written (``write``)."""
        self.pending[record_hash] = rec

    def write(self, uow: UnitOfWork, charges: Iterable[Charge]) -> list[str]:
        """Write the blobs and rows of these charges' pending records (in the charges'
        transaction); returns the hashes written, to :meth:`done` after commit."""
        rows = []
        for c in charges:
            rec = self.pending.get(c.record) if c.record else None
            if rec is None:
                continue
            self.blobs.put_bytes(rec.to_bytes())
            rows.append((c.record, rec, c.cost))
        InferenceRepo(uow.conn).add_records(rows)
        return [h for h, _r, _c in rows]

    def done(self, hashes: Iterable[str]) -> None:
        for h in hashes:
            self.pending.pop(h, None)

    def read(self, record_hash: str) -> UsageRecord:
        """A stored record (:class:`~nosgrid.core.errors.BlobNotFound` once pruned)."""
        return UsageRecord.from_bytes(self.blobs.open(record_hash).read_bytes())

    def prune(self, uow: UnitOfWork, before: int) -> list[str]:
        """Drop the rows of records older than ``before`` that no audit needs; returns
        their hashes, whose blobs :meth:`forget` removes once this commits."""
        repo = InferenceRepo(uow.conn)
        old = repo.expired(before)
        repo.drop(old)
        return old

    def forget(self, hashes: Iterable[str]) -> None:
        for h in hashes:
            self.blobs.remove(h)


__all__ = ["Recorder", "Trace", "deployment_digest", "new_request_id"]
