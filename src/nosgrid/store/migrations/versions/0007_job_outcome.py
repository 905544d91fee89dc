"""jobs.outcome: how a job's last run ended, as a word (reason text is for people only)

Existing rows get the outcome their state, fault and reason imply. A job that was requeued
and then completed kept the requeue's reason before this revision; it is ``completed``.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("state", sa.String),
                 sa.column("fault", sa.String), sa.column("reason", sa.Text),
                 sa.column("result", sa.Text), sa.column("attempts", sa.Integer),
                 sa.column("outcome", sa.String))


def _outcome(state: str, fault: str | None, reason: str, result: str, attempts: int
             ) -> str | None:
    if reason == "cancelled by the client":
        return "cancelled"
    if reason == "reassigned":
        return "withdrawn"
    if fault == "client":
        return "timed_out" if reason == "the job ran past its timeout" else "spec_failed"
    if fault == "node":
        return "node_silent" if reason == "the node did not report before the deadline" \
            else "node_failed"
    if state in ("completed", "verifying", "disputed", "settled") and result not in ("", "{}"):
        return "completed"
    if state == "queued" and attempts > 0:
        return "requeued"
    if state == "cancelled" or (state == "settled" and reason):
        return "cancelled"
    return None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_jobs.c.id, _jobs.c.state, _jobs.c.fault, _jobs.c.reason,
                                  _jobs.c.result, _jobs.c.attempts)).all()
    for r in rows:
        outcome = _outcome(r.state, r.fault, r.reason or "", r.result or "", r.attempts or 0)
        if outcome is not None:
            conn.execute(sa.update(_jobs).where(_jobs.c.id == r.id).values(outcome=outcome))
            if outcome == "completed" and r.fault is None and r.reason:
                conn.execute(sa.update(_jobs).where(_jobs.c.id == r.id).values(reason=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("outcome")
