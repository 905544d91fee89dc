"""The settlement outbox: on-chain transactions owed by committed journal entries.

A row is written in the same database transaction as the journal entry it pays out, so a
payout can neither be lost (the entry committed, so did the row) nor invented (the entry
rolled back, so did the row). The sender moves a row ``pending → sent → confirmed``:
``sent`` rows carry the signature and the signed transaction *before* it is submitted, so
after a crash the sender asks the chain whether that signature landed instead of paying
again. See ``nosgrid.settlement.sender``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Connection, func, select, update

from nosgrid.store import tables as t
from nosgrid.store.repositories import _insert


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    CONFIRMED = "confirmed"


class OutboxKind(StrEnum):
    """What a row pays. ``source`` (the ``client`` column) is the client for a payout and
    the staker (or slashed node) for the stake kinds; the vault follows from the kind."""

    PAYOUT = "payout"
    ANCHOR = "anchor"
    STAKE_DEPOSIT = "stake_deposit"  # staker's account (authority as delegate) → stake vault
    STAKE_WITHDRAW = "stake_withdraw"  # stake vault → staker (after the unlock)
    SLASH = "slash"  # stake vault → treasury (+ challenger)
    REWARDS_CLAIM = "rewards_claim"  # rewards vault → staker
    AUDIT_PAY = "audit_pay"  # audit vault → the runners of an audit (the fee came in a payout)
    EMISSION = "emission"  # emissions vault → the nodes an epoch rewards
    RECEIPT = "receipt"  # a result receipt to publish (seq: its receipts row; no legs)
    ATTESTOR = "attestor"  # an attestor key epoch to publish as a Memo (seq: the epoch)
    REFUND = "refund"  # request vault → a chain request's payer, with a reason Memo


#: kinds that spend from ``source``'s allowance (they count as reserved until confirmed;
#: a refund spends from the request vault, the "client" of jobs requested from chain)
ALLOWANCE_KINDS: Final = (OutboxKind.PAYOUT, OutboxKind.STAKE_DEPOSIT, OutboxKind.REFUND)


@dataclass(frozen=True)
class OutboxLeg:
    """``amount`` to ``destination`` (wallet or token account), mirroring ledger ``account``."""

    destination: str
    amount: int
    account: str


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: OutboxKind
    job_id: str | None
    entry_hash: str
    seq: int | None
    legs: tuple[OutboxLeg, ...]
    source: str | None
    status: OutboxStatus
    signature: str | None
    tx: bytes | None
    last_valid_block_height: int | None
    attempts: int
    error: str
    created_at: float
    updated_at: float
    confirmed_at: float | None

    @property
    def total(self) -> int:
        return sum(leg.amount for leg in self.legs)


def _row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=int(r.id), kind=OutboxKind(r.kind), job_id=r.job_id, entry_hash=str(r.entry_hash),
        seq=None if r.seq is None else int(r.seq),
        legs=tuple(OutboxLeg(str(d), int(a), str(acct)) for d, a, acct in json.loads(r.legs)),
        source=r.client, status=OutboxStatus(r.status), signature=r.signature,
        tx=None if r.tx is None else bytes(r.tx),
        last_valid_block_height=(None if r.last_valid_block_height is None
                                 else int(r.last_valid_block_height)),
        attempts=int(r.attempts), error=str(r.error), created_at=float(r.created_at),
        updated_at=float(r.updated_at),
        confirmed_at=None if r.confirmed_at is None else float(r.confirmed_at),
    )


class OutboxRepo:
    """Rows of ``settlement_outbox``; ``source`` is stored in the ``client`` column (the
    client whose allowance pays, or the vault a withdrawal leaves)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, *, kind: OutboxKind, entry_hash: str, legs: Sequence[OutboxLeg], at: float,
            job_id: str | None = None, source: str | None = None,
            seq: int | None = None) -> bool:
        """Queue a transaction; False if one for this (kind, entry) is already queued."""
        ins = _insert(self.conn, t.settlement_outbox).values(
            kind=kind.value, job_id=job_id, entry_hash=entry_hash, seq=seq,
            legs=json.dumps([[leg.destination, leg.amount, leg.account] for leg in legs]),
            client=source, status=OutboxStatus.PENDING.value, attempts=0, error="",
            created_at=at, updated_at=at)
        res = self.conn.execute(ins.on_conflict_do_nothing(index_elements=["kind",
                                                                           "entry_hash"]))
        return res.rowcount == 1

    def get(self, row_id: int) -> OutboxRow:
        row = self.conn.execute(select(t.settlement_outbox).where(
            t.settlement_outbox.c.id == row_id)).one()
        return _row(row)

    def by_entry(self, kind: OutboxKind, entry_hash: str) -> OutboxRow | None:
        """The row of ``kind`` queued for ``entry_hash`` (one at most)."""
        row = self.conn.execute(select(t.settlement_outbox).where(
            t.settlement_outbox.c.kind == kind.value,
            t.settlement_outbox.c.entry_hash == entry_hash)).first()
        return None if row is None else _row(row)

    def for_job(self, job_id: str) -> list[OutboxRow]:
        rows = self.conn.execute(select(t.settlement_outbox).where(
            t.settlement_outbox.c.job_id == job_id).order_by(t.settlement_outbox.c.id))
        return [_row(r) for r in rows]

    def in_status(self, status: OutboxStatus, limit: int = 1000,
                  kind: OutboxKind | None = None) -> list[OutboxRow]:
        query = select(t.settlement_outbox).where(t.settlement_outbox.c.status == status.value)
        if kind is not None:
            query = query.where(t.settlement_outbox.c.kind == kind.value)
        rows = self.conn.execute(query.order_by(t.settlement_outbox.c.id).limit(limit))
        return [_row(r) for r in rows]

    def unconfirmed(self) -> list[OutboxRow]:
        rows = self.conn.execute(select(t.settlement_outbox).where(
            t.settlement_outbox.c.status != OutboxStatus.CONFIRMED.value)
            .order_by(t.settlement_outbox.c.id))
        return [_row(r) for r in rows]

    def unconfirmed_for(self, source: str) -> int:
        """Base units still owed from ``source``'s account by unconfirmed payouts and stake
        deposits (both spend its allowance)."""
        rows = self.conn.execute(select(t.settlement_outbox.c.legs).where(
            t.settlement_outbox.c.client == source,
            t.settlement_outbox.c.kind.in_([k.value for k in ALLOWANCE_KINDS]),
            t.settlement_outbox.c.status != OutboxStatus.CONFIRMED.value))
        return sum(int(a) for r in rows for _d, a, _acct in json.loads(r.legs))

    def mark_sent(self, ids: Sequence[int], signature: str, tx: bytes,
                  last_valid_block_height: int | None, at: float) -> None:
        self.conn.execute(update(t.settlement_outbox).where(
            t.settlement_outbox.c.id.in_(list(ids))).values(
            status=OutboxStatus.SENT.value, signature=signature, tx=tx,
            last_valid_block_height=last_valid_block_height,
            attempts=t.settlement_outbox.c.attempts + 1, updated_at=at))

    def mark_confirmed(self, ids: Sequence[int], at: float) -> None:
        self.conn.execute(update(t.settlement_outbox).where(
            t.settlement_outbox.c.id.in_(list(ids))).values(
            status=OutboxStatus.CONFIRMED.value, error="", updated_at=at, confirmed_at=at))

    def back_to_pending(self, ids: Sequence[int], error: str, at: float,
                        count_attempt: bool = False) -> None:
        """The transaction did not and cannot execute: forget it, build a new one later."""
        values: dict[str, Any] = {"status": OutboxStatus.PENDING.value, "signature": None,
                                  "tx": None, "last_valid_block_height": None,
                                  "error": error[:2000], "updated_at": at}
        if count_attempt:
            values["attempts"] = t.settlement_outbox.c.attempts + 1
        self.conn.execute(update(t.settlement_outbox).where(
            t.settlement_outbox.c.id.in_(list(ids))).values(**values))

    def note_error(self, ids: Sequence[int], error: str, at: float) -> None:
        self.conn.execute(update(t.settlement_outbox).where(
            t.settlement_outbox.c.id.in_(list(ids))).values(error=error[:2000], updated_at=at))

    def last_anchor_seq(self) -> int | None:
        value = self.conn.execute(select(func.max(t.settlement_outbox.c.seq)).where(
            t.settlement_outbox.c.kind == OutboxKind.ANCHOR.value)).scalar()
        return None if value is None else int(value)

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute(select(t.settlement_outbox.c.status, func.count())
                                 .group_by(t.settlement_outbox.c.status))
        return {str(s): int(n) for s, n in rows}
