"""Rows of gateway usage records (issue 14): who asked what of which node and model files,
which journal entry billed it, and where its audit stands. The record itself is a blob."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nosgrid.core.verification.inference import UsageRecord
from nosgrid.store import tables as t

#: where a record's audit stands (``disputed``: an auditor faulted it, the tiebreak panel
#: has not all replayed it yet)
RECORDED, PASSED, SAMPLED, CLEAN, FAULTED = "recorded", "passed", "sampled", "clean", "faulted"
DISPUTED = "disputed"


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert(table) if conn.dialect.name == "postgresql"
            else sqlite.insert(table))


class InferenceRepo:
    """Statements over ``gateway_records``, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_records(self, records: Sequence[tuple[str, UsageRecord, int]]) -> None:
        """(hash, record, cost) of requests whose charges are being written (idempotent)."""
        if not records:
            return
        stmt = _insert(self.conn, t.gateway_records).on_conflict_do_nothing(
            index_elements=["hash"])
        self.conn.execute(stmt, [
            {"hash": h, "kid": r.kid, "owner": r.owner, "node": r.node, "model": r.model,
             "model_digest": r.model_digest, "job": r.job, "cost": cost, "at": r.at,
             "replayable": int(r.replayable), "entry": None, "state": RECORDED,
             "verdict": None} for h, r, cost in records])

    def bill_records(self, hashes: Iterable[str], entry: int, *,
                     paid_at: int | None = None) -> None:
        """These records were billed by journal entry ``entry``; ``paid_at`` when that
        entry paid the node at once (no audit hold), so nothing of theirs is held."""
        ids = sorted(set(hashes))
        if ids:
            self.conn.execute(update(t.gateway_records).where(
                t.gateway_records.c.hash.in_(ids)).values(entry=entry, settled_at=paid_at))

    def record(self, record_hash: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(t.gateway_records).where(
            t.gateway_records.c.hash == record_hash)).first()
        return None if row is None else dict(row._mapping)

    def records_of(self, owner: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The owner's newest records (a client may read its own requests' records)."""
        r = t.gateway_records.c
        return [dict(row._mapping) for row in self.conn.execute(
            select(t.gateway_records).where(r.owner == owner)
            .order_by(r.at.desc(), r.hash).limit(limit))]

    def undecided(self, *, limit: int = 1_000) -> list[dict[str, Any]]:
        """Billed records whose audit draw has not been made (oldest entries first)."""
        r = t.gateway_records.c
        return [dict(row._mapping) for row in self.conn.execute(
            select(t.gateway_records).where(r.state == RECORDED, r.entry.is_not(None))
            .order_by(r.entry, r.hash).limit(limit))]

    def sampled(self, *, limit: int = 1_000) -> list[dict[str, Any]]:
        r = t.gateway_records.c
        return [dict(row._mapping) for row in self.conn.execute(
            select(t.gateway_records).where(r.state == SAMPLED)
            .order_by(r.node, r.model_digest, r.at, r.hash).limit(limit))]

    def set_state(self, hashes: Iterable[str], state: str, verdict: str | None = None
                  ) -> None:
        ids = sorted(set(hashes))
        if ids:
            values: dict[str, Any] = {"state": state}
            if verdict is not None:
                values["verdict"] = verdict
            self.conn.execute(update(t.gateway_records).where(
                t.gateway_records.c.hash.in_(ids)).values(**values))

    def clean_count(self, node: str, digest: str) -> int:
        """Clean audited requests of (node, model digest) since its last fault."""
        r = t.gateway_records.c
        last_fault = self.conn.execute(select(func.max(r.at)).where(
            r.node == node, r.model_digest == digest, r.state == FAULTED)).scalar()
        q = select(func.count()).select_from(t.gateway_records).where(
            r.node == node, r.model_digest == digest, r.state == CLEAN)
        if last_fault is not None:
            q = q.where(r.at > last_fault)
        return int(self.conn.execute(q).scalar() or 0)

    def expired(self, before: int, *, limit: int = 1_000) -> list[str]:
        """Records older than ``before`` that no audit needs any more (not sampled or
        faulted: those are evidence)."""
        r = t.gateway_records.c
        return [str(x) for x in self.conn.execute(
            select(r.hash).where(r.at < before, r.state.in_([RECORDED, PASSED, CLEAN]),
                                 r.entry.is_not(None),
                                 r.settled_at.is_not(None) | (r.cost == 0))
            .order_by(r.at).limit(limit)).scalars()]

    def held_due(self, before: int, *, limit: int = 1_000) -> list[dict[str, Any]]:
        """Billed, unsettled records whose hold may end: faulted ones at once, passed or
        clean ones recorded before ``before`` (a sampled one waits for its verdict)."""
        r = t.gateway_records.c
        return [dict(row._mapping) for row in self.conn.execute(
            select(t.gateway_records).where(
                r.entry.is_not(None), r.settled_at.is_(None), r.cost > 0,
                (r.state == FAULTED) | (r.state.in_([PASSED, CLEAN]) & (r.at < before)))
            .order_by(r.owner, r.at, r.hash).limit(limit))]

    def mark_settled(self, hashes: Iterable[str], now: int) -> None:
        ids = sorted(set(hashes))
        if ids:
            self.conn.execute(update(t.gateway_records).where(
                t.gateway_records.c.hash.in_(ids)).values(settled_at=now))

    def drop(self, hashes: Sequence[str]) -> None:
        if hashes:
            self.conn.execute(delete(t.gateway_records).where(
                t.gateway_records.c.hash.in_(list(hashes))))


__all__ = ["CLEAN", "DISPUTED", "FAULTED", "PASSED", "RECORDED", "SAMPLED", "InferenceRepo"]
