"""Gateway workers: leases (gateway_workers), charges written per request (gateway_charges),
gateway_keys.held (the key's holds over all workers, bounded with spent by the cap),
gateway_services.last_used_at (idle replicas stop on the last use by any worker)

Holds become per worker (``gwhold:<kid>:<worker>``). A hold of the old shape
(``gwhold:<kid>``) belongs to no worker; its pending usage, if any, died with the process
that held it (the old design's known limit), so this revision returns each one to its
key's owner in one ``gateway.release`` journal entry, hash-chained like any other, and the
ledger's invariants (and ``nosgrid ledger verify``) hold across it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from alembic import op

from nosgrid.core.ledger import GATEWAY_HOLD_PREFIX, Posting, make_entry, wallet

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_accounts = sa.table("accounts", sa.column("name", sa.String), sa.column("balance", sa.BigInteger))
_keys = sa.table("gateway_keys", sa.column("kid", sa.String), sa.column("owner", sa.String))
_head = sa.table("ledger_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger),
                 sa.column("hash", sa.String))
_journal = sa.table("journal", sa.column("seq", sa.BigInteger), sa.column("hash", sa.String),
                    sa.column("prev_hash", sa.String), sa.column("kind", sa.String),
                    sa.column("ref", sa.String), sa.column("at", sa.BigInteger),
                    sa.column("meta", sa.Text))
_postings = sa.table("postings", sa.column("entry_seq", sa.BigInteger),
                     sa.column("idx", sa.Integer), sa.column("src", sa.String),
                     sa.column("dst", sa.String), sa.column("amount", sa.BigInteger))


def upgrade() -> None:
    op.create_table(
        "gateway_workers",
        sa.Column("worker", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker"),
    )
    op.create_table(
        "gateway_charges",
        sa.Column("worker", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker", "seq"),
    )
    with op.batch_alter_table("gateway_keys") as batch:
        batch.add_column(sa.Column("held", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("gateway_keys") as batch:
        batch.alter_column("held", server_default=None)
    with op.batch_alter_table("gateway_services") as batch:
        batch.add_column(sa.Column("last_used_at", sa.Float(), nullable=True))
    _release_old_holds(op.get_bind())


def _release_old_holds(conn: sa.Connection) -> None:
    """Return every ``gwhold:<kid>`` balance to the key's owner (one journal entry)."""
    head = conn.execute(sa.select(_head.c.seq, _head.c.hash).where(_head.c.id == 1)).first()
    if head is None:  # a fresh database: genesis has not even run
        return
    rows = conn.execute(
        sa.select(_accounts.c.name, _accounts.c.balance, _keys.c.owner)
        .join(_keys, _accounts.c.name == GATEWAY_HOLD_PREFIX + _keys.c.kid)
        .where(_accounts.c.balance > 0).order_by(_accounts.c.name)).all()
    postings = [Posting(str(r.name), wallet(str(r.owner)), int(r.balance)) for r in rows]
    if not postings:
        return
    entry = make_entry(seq=int(head.seq) + 1, prev_hash=str(head.hash), kind="gateway.release",
                       ref="migration-0006", at=int(time.time()), postings=postings,
                       meta={"reason": "holds became per worker"})
    for p in postings:
        conn.execute(sa.update(_accounts).where(_accounts.c.name == p.src)
                     .values(balance=_accounts.c.balance - p.amount))
        updated = conn.execute(sa.update(_accounts).where(_accounts.c.name == p.dst)
                               .values(balance=_accounts.c.balance + p.amount))
        if updated.rowcount == 0:
            conn.execute(sa.insert(_accounts).values(name=p.dst, balance=p.amount))
    conn.execute(sa.insert(_journal).values(
        seq=entry.seq, hash=entry.hash, prev_hash=entry.prev_hash, kind=entry.kind,
        ref=entry.ref, at=entry.at,
        meta=json.dumps(dict(entry.meta), sort_keys=True, separators=(",", ":"))))
    conn.execute(sa.insert(_postings), [
        {"entry_seq": entry.seq, "idx": i, "src": p.src, "dst": p.dst, "amount": p.amount}
        for i, p in enumerate(entry.postings)])
    conn.execute(sa.update(_head).where(_head.c.id == 1)
                 .values(seq=entry.seq, hash=entry.hash))


def downgrade() -> None:
    # per-worker holds have no old shape to go back to: stop every coordinator first (a
    # clean stop releases its holds and pays its charges)
    with op.batch_alter_table("gateway_services") as batch:
        batch.drop_column("last_used_at")
    with op.batch_alter_table("gateway_keys") as batch:
        batch.drop_column("held")
    op.drop_table("gateway_charges")
    op.drop_table("gateway_workers")
