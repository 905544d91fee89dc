"""nodes.pinned_markets: what the operator asked for, so the markets a node serves can be
recomputed (a new market, a stake that moved) without the node registering again

NULL means "any market it qualifies for". A node registered before this revision kept
only the markets it was accepted into; those become its pins, so it serves no market its
operator may not have chosen, until its agent registers again and says what it wants.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_nodes = sa.table("nodes", sa.column("markets", sa.Text), sa.column("pinned_markets", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("pinned_markets", sa.Text(), nullable=True))
    op.get_bind().execute(sa.update(_nodes).values(pinned_markets=_nodes.c.markets))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("pinned_markets")
