"""the price oracle: reporter keys, sources' asks and signed reports, standings, and each
closed epoch's published price (issue 16)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oracle_reporters",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("consent", sa.String(length=128), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_oracle_reporters_operator", "oracle_reporters", ["operator"])
    op.create_table(
        "oracle_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("market", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_oracle_reports_market_at", "oracle_reports", ["market", "at"])
    op.create_index("ix_oracle_reports_source", "oracle_reports",
                    ["source", "market", "epoch"])
    op.create_table(
        "oracle_standings",
        sa.Column("market", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("weight_bps", sa.Integer(), nullable=False),
        sa.Column("deviations", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("market", "operator"),
    )
    op.create_table(
        "oracle_prices",
        sa.Column("market", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=True),
        sa.Column("sources", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("market", "epoch"),
    )


def downgrade() -> None:
    op.drop_table("oracle_prices")
    op.drop_table("oracle_standings")
    op.drop_index("ix_oracle_reports_source", table_name="oracle_reports")
    op.drop_index("ix_oracle_reports_market_at", table_name="oracle_reports")
    op.drop_table("oracle_reports")
    op.drop_index("ix_oracle_reporters_operator", table_name="oracle_reporters")
    op.drop_table("oracle_reporters")
