"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 09:29:24.256838
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("name", sa.String(length=160), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "faucet_grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pubkey", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("faucet_grants", schema=None) as batch_op:
        batch_op.create_index("ix_faucet_pubkey_at", ["pubkey", "at"], unique=False)

    op.create_table(
        "job_logs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "seq"),
    )
    op.create_table(
        "jobs",
        sa.Column("rowid_", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("market", sa.String(length=64), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=True),
        sa.Column("timeout", sa.Integer(), nullable=False),
        sa.Column("deposit", sa.BigInteger(), nullable=False),
        sa.Column("price_per_second", sa.BigInteger(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("stakers_share_bps", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("assigned_at", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("seconds_used", sa.Integer(), nullable=False),
        sa.Column("fault", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("rowid_"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_client", ["client", "rowid_"], unique=False)
        batch_op.create_index("ix_jobs_node", ["node", "state"], unique=False)
        batch_op.create_index("ix_jobs_state_market", ["state", "market", "rowid_"], unique=False)

    op.create_table(
        "journal",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=160), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("hash"),
    )
    with op.batch_alter_table("journal", schema=None) as batch_op:
        batch_op.create_index("ix_journal_ref", ["ref"], unique=False)

    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "markets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hardware", sa.Text(), nullable=False),
        sa.Column("markets", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat", sa.Float(), nullable=False),
        sa.Column("waiting_since", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "nonces",
        sa.Column("pubkey", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pubkey", "nonce"),
    )
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.create_index("ix_nonces_at", ["at"], unique=False)

    op.create_table(
        "specs",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "postings",
        sa.Column("entry_seq", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("src", sa.String(length=160), nullable=False),
        sa.Column("dst", sa.String(length=160), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_seq"],
            ["journal.seq"],
        ),
        sa.PrimaryKeyConstraint("entry_seq", "idx"),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_index("ix_postings_dst", ["dst"], unique=False)
        batch_op.create_index("ix_postings_src", ["src"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index("ix_postings_src")
        batch_op.drop_index("ix_postings_dst")

    op.drop_table("postings")
    op.drop_table("specs")
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.drop_index("ix_nonces_at")

    op.drop_table("nonces")
    op.drop_table("nodes")
    op.drop_table("markets")
    op.drop_table("ledger_head")
    with op.batch_alter_table("journal", schema=None) as batch_op:
        batch_op.drop_index("ix_journal_ref")

    op.drop_table("journal")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_market")
        batch_op.drop_index("ix_jobs_node")
        batch_op.drop_index("ix_jobs_client")

    op.drop_table("jobs")
    op.drop_table("job_logs")
    with op.batch_alter_table("faucet_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_faucet_pubkey_at")

    op.drop_table("faucet_grants")
    op.drop_table("blobs")
    op.drop_table("accounts")
