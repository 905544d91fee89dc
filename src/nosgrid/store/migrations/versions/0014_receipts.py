"""result receipts, the attestor key chain, and compute requested from chain (issue 17)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("receipt", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("attestor", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_receipts_job_verdict", "receipts", ["job_id", "verdict"], unique=True)
    op.create_table(
        "attestor_epochs",
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("epoch"),
    )
    op.create_table(
        "chain_requests",
        sa.Column("signature", sa.String(length=96), nullable=False),
        sa.Column("payer", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("reply_key", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index("ix_chain_requests_status", "chain_requests", ["status"])
    op.create_index("ix_chain_requests_job", "chain_requests", ["job_id"])
    op.create_table(
        "chain_refunds",
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("request", sa.String(length=96), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("entry_hash"),
    )
    op.create_index("ix_chain_refunds_request", "chain_refunds", ["request"])
    op.create_table(
        "chain_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=96), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("chain_cursors")
    op.drop_index("ix_chain_refunds_request", table_name="chain_refunds")
    op.drop_table("chain_refunds")
    op.drop_index("ix_chain_requests_job", table_name="chain_requests")
    op.drop_index("ix_chain_requests_status", table_name="chain_requests")
    op.drop_table("chain_requests")
    op.drop_table("attestor_epochs")
    op.drop_index("ix_receipts_job_verdict", table_name="receipts")
    op.drop_table("receipts")
