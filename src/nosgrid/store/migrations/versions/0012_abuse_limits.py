"""abuse resistance: the queue's priority order, node operators, idempotency records
(issue 16)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queue_at", sa.BigInteger(), nullable=True))
    op.execute("UPDATE jobs SET queue_at = created_at")
    op.create_index("ix_jobs_queue", "jobs", ["state", "market", "queue_at", "rowid_"])
    op.create_index("ix_jobs_client_state", "jobs", ["client", "state"])
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("operator", sa.String(length=64), nullable=True))
    op.create_index("ix_nodes_operator", "nodes", ["operator"])
    op.create_table(
        "idempotency_records",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "key"),
    )
    op.create_index("ix_idempotency_at", "idempotency_records", ["at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_at", table_name="idempotency_records")
    op.drop_table("idempotency_records")
    op.drop_index("ix_nodes_operator", table_name="nodes")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("operator")
    op.drop_index("ix_jobs_client_state", table_name="jobs")
    op.drop_index("ix_jobs_queue", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue_at")
