"""settlement outbox: on-chain payouts, anchors and stake withdrawals to send

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settlement_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("legs", sa.Text(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=96), nullable=True),
        sa.Column("tx", sa.LargeBinary(), nullable=True),
        sa.Column("last_valid_block_height", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("confirmed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("settlement_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_status", ["status", "id"], unique=False)
        batch_op.create_index("ix_outbox_client", ["client", "status"], unique=False)
        batch_op.create_index("ix_outbox_kind_entry", ["kind", "entry_hash"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("settlement_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_kind_entry")
        batch_op.drop_index("ix_outbox_client")
        batch_op.drop_index("ix_outbox_status")
    op.drop_table("settlement_outbox")
