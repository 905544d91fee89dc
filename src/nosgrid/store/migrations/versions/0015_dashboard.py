"""the dashboard: node uptime per hour, and jobs by market and finish time (issue 19)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_uptime",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "hour"),
    )
    op.create_index("ix_jobs_market_finished", "jobs", ["market", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_market_finished", table_name="jobs")
    op.drop_table("node_uptime")
