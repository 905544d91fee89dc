"""Receipts, attestor epochs, chain requests and watcher cursors (issue 17).

Repositories over their own tables, opened on a unit of work's connection
(``ReceiptRepo(uow.conn)``), like the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select, update

from nosgrid.core.attestor import AttestorEpoch
from nosgrid.core.receipts import SignedReceipt
from nosgrid.store import tables as t
from nosgrid.store.repositories import _insert, upsert


@dataclass(frozen=True)
class StoredReceipt:
    id: int
    job_id: str
    verdict: str
    seq: int
    epoch: int
    signed: SignedReceipt
    issued_at: int


def _receipt(r: Any) -> StoredReceipt:
    return StoredReceipt(int(r.id), str(r.job_id), str(r.verdict), int(r.seq), int(r.epoch),
                         SignedReceipt(bytes(r.receipt), bytes(r.signature), str(r.attestor)),
                         int(r.issued_at))


class ReceiptRepo:
    """Issued receipts; at most one per (job, verdict)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, *, job_id: str, verdict: str, seq: int, epoch: int, signed: SignedReceipt,
            at: int) -> int | None:
        """Store a receipt; ``None`` if the job already has one with this verdict."""
        ins = _insert(self.conn, t.receipts).values(
            job_id=job_id, verdict=verdict, seq=seq, epoch=epoch, receipt=signed.receipt,
            signature=signed.signature, attestor=signed.attestor, issued_at=at)
        res = self.conn.execute(ins.on_conflict_do_nothing(index_elements=["job_id", "verdict"]))
        if res.rowcount != 1:
            return None
        key = res.inserted_primary_key
        return None if key is None else int(key[0])

    def get(self, receipt_id: int) -> StoredReceipt:
        return _receipt(self.conn.execute(select(t.receipts).where(
            t.receipts.c.id == receipt_id)).one())

    def for_job(self, job_id: str) -> list[StoredReceipt]:
        """The job's receipts, oldest first (the last is the one that counts)."""
        rows = self.conn.execute(select(t.receipts).where(t.receipts.c.job_id == job_id)
                                 .order_by(t.receipts.c.id))
        return [_receipt(r) for r in rows]

    def many(self, ids: list[int]) -> list[StoredReceipt]:
        rows = self.conn.execute(select(t.receipts).where(t.receipts.c.id.in_(ids))
                                 .order_by(t.receipts.c.id))
        return [_receipt(r) for r in rows]


class AttestorRepo:
    """The attestor key chain, epoch by epoch."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def epochs(self) -> list[AttestorEpoch]:
        rows = self.conn.execute(select(t.attestor_epochs).order_by(t.attestor_epochs.c.epoch))
        return [AttestorEpoch(int(r.epoch), str(r.key), str(r.signature)) for r in rows]

    def current(self) -> AttestorEpoch | None:
        row = self.conn.execute(select(t.attestor_epochs).order_by(
            t.attestor_epochs.c.epoch.desc()).limit(1)).first()
        return None if row is None else AttestorEpoch(int(row.epoch), str(row.key),
                                                      str(row.signature))

    def add(self, record: AttestorEpoch, at: int) -> bool:
        """Record an epoch; False if that epoch is already recorded (another process won)."""
        ins = _insert(self.conn, t.attestor_epochs).values(
            epoch=record.epoch, key=record.key, signature=record.signature, created_at=at)
        return self.conn.execute(ins.on_conflict_do_nothing(index_elements=["epoch"])
                                 ).rowcount == 1


class RequestStatus(StrEnum):
    SEEN = "seen"  # read from chain, not yet acted on
    POSTED = "posted"  # its job is posted (job_id)
    REFUNDING = "refunding"  # cannot run: a refund with a reason memo is queued
    REFUNDED = "refunded"


@dataclass(frozen=True)
class ChainRequest:
    signature: str
    payer: str
    source: str
    amount: int
    memo: str
    status: RequestStatus
    job_id: str | None
    reply_key: str | None
    reason: str
    slot: int


def _request(r: Any) -> ChainRequest:
    return ChainRequest(str(r.signature), str(r.payer), str(r.source), int(r.amount),
                        str(r.memo), RequestStatus(r.status), r.job_id, r.reply_key,
                        str(r.reason), int(r.slot))


class ChainRequestRepo:
    """Requests paid into the request vault, keyed by the paying transaction's signature."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, *, signature: str, payer: str, source: str, amount: int, memo: str,
            slot: int, at: int) -> bool:
        """Record a request once; False if this signature was seen before (a replay)."""
        ins = _insert(self.conn, t.chain_requests).values(
            signature=signature, payer=payer, source=source, amount=amount, memo=memo,
            status=RequestStatus.SEEN.value, reason="", slot=slot, seen_at=at, updated_at=at)
        return self.conn.execute(ins.on_conflict_do_nothing(index_elements=["signature"])
                                 ).rowcount == 1

    def get(self, signature: str) -> ChainRequest | None:
        row = self.conn.execute(select(t.chain_requests).where(
            t.chain_requests.c.signature == signature)).first()
        return None if row is None else _request(row)

    def claim(self, signature: str) -> ChainRequest | None:
        """The request if it still waits (``seen``), its row locked for this transaction
        (PostgreSQL ``FOR UPDATE``; SQLite's write transactions are serial already), so two
        coordinator processes never both act on it."""
        row = self.conn.execute(select(t.chain_requests).where(
            t.chain_requests.c.signature == signature,
            t.chain_requests.c.status == RequestStatus.SEEN.value).with_for_update()).first()
        return None if row is None else _request(row)

    def for_job(self, job_id: str) -> ChainRequest | None:
        row = self.conn.execute(select(t.chain_requests).where(
            t.chain_requests.c.job_id == job_id)).first()
        return None if row is None else _request(row)

    def in_status(self, *statuses: RequestStatus) -> list[ChainRequest]:
        rows = self.conn.execute(select(t.chain_requests).where(
            t.chain_requests.c.status.in_([s.value for s in statuses]))
            .order_by(t.chain_requests.c.slot, t.chain_requests.c.seen_at))
        return [_request(r) for r in rows]

    def all(self) -> list[ChainRequest]:
        rows = self.conn.execute(select(t.chain_requests).order_by(t.chain_requests.c.slot))
        return [_request(r) for r in rows]

    def mark(self, signature: str, status: RequestStatus, at: int, *, job_id: str | None = None,
             reply_key: str | None = None, reason: str | None = None) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": at}
        if job_id is not None:
            values["job_id"] = job_id
        if reply_key is not None:
            values["reply_key"] = reply_key
        if reason is not None:
            values["reason"] = reason[:2000]
        self.conn.execute(update(t.chain_requests).where(
            t.chain_requests.c.signature == signature).values(**values))


@dataclass(frozen=True)
class ChainRefund:
    entry_hash: str
    request: str
    reason: str
    amount: int
    destination: str


class ChainRefundRepo:
    """Refunds out of the request vault, keyed by their ledger entry / outbox row."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, refund: ChainRefund, at: int) -> None:
        self.conn.execute(t.chain_refunds.insert().values(
            entry_hash=refund.entry_hash, request=refund.request, reason=refund.reason,
            amount=refund.amount, destination=refund.destination, created_at=at))

    def get(self, entry_hash: str) -> ChainRefund | None:
        r = self.conn.execute(select(t.chain_refunds).where(
            t.chain_refunds.c.entry_hash == entry_hash)).first()
        return None if r is None else ChainRefund(str(r.entry_hash), str(r.request),
                                                  str(r.reason), int(r.amount),
                                                  str(r.destination))

    def for_request(self, request: str) -> list[ChainRefund]:
        rows = self.conn.execute(select(t.chain_refunds).where(
            t.chain_refunds.c.request == request).order_by(t.chain_refunds.c.created_at))
        return [ChainRefund(str(r.entry_hash), str(r.request), str(r.reason), int(r.amount),
                            str(r.destination)) for r in rows]


class CursorRepo:
    """Where each watcher stopped: written in the transaction that recorded what it read."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, name: str) -> str | None:
        row = self.conn.execute(select(t.chain_cursors.c.position).where(
            t.chain_cursors.c.name == name)).first()
        return None if row is None else str(row[0])

    def set(self, name: str, position: str, at: int) -> None:
        self.conn.execute(upsert(self.conn, t.chain_cursors,
                                 {"name": name, "position": position, "updated_at": at},
                                 ["name"]))
