"""gateway usage records for verifiable inference: a record hash on each charge and one
row per recorded request (issue 14)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_charges") as batch:
        batch.add_column(sa.Column("record", sa.String(length=64), nullable=False,
                                   server_default=""))
    op.create_table(
        "gateway_records",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("model_digest", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("replayable", sa.Integer(), nullable=False),
        sa.Column("entry", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=True),
        sa.Column("settled_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index("ix_gateway_records_owner", "gateway_records", ["owner", "at"])
    op.create_index("ix_gateway_records_state", "gateway_records",
                    ["state", "node", "model_digest"])


def downgrade() -> None:
    op.drop_index("ix_gateway_records_state", table_name="gateway_records")
    op.drop_index("ix_gateway_records_owner", table_name="gateway_records")
    op.drop_table("gateway_records")
    with op.batch_alter_table("gateway_charges") as batch:
        batch.drop_column("record")
