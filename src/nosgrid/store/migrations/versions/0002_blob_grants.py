"""blob grants: who may download which blob

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_grants",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("pubkey", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "pubkey"),
    )


def downgrade() -> None:
    op.drop_table("blob_grants")
