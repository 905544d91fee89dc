"""verification in its own tables: cases, their runs, audit records and partners

Before this revision the verification service kept JSON rows in ``protocol_state``
(kinds ``verification``, ``audit_run``, ``audit_record``); they are moved here and deleted.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_state = sa.table("protocol_state", sa.column("kind", sa.String), sa.column("key", sa.String),
                  sa.column("body", sa.Text))
_KINDS = ("verification", "audit_run", "audit_record")


def upgrade() -> None:
    cases = op.create_table(
        "verification_cases",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result_seq", sa.BigInteger(), nullable=False),
        sa.Column("result_hash", sa.String(length=64), nullable=False),
        sa.Column("held_at", sa.BigInteger(), nullable=False),
        sa.Column("beacon", sa.String(length=64), nullable=False),
        sa.Column("rate_bps", sa.Integer(), nullable=False),
        sa.Column("draw", sa.Integer(), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("release_at", sa.BigInteger(), nullable=True),
        sa.Column("auditor", sa.String(length=64), nullable=True),
        sa.Column("audit_job", sa.String(length=64), nullable=True),
        sa.Column("auditors", sa.Text(), nullable=False),
        sa.Column("comparison", sa.Text(), nullable=True),
        sa.Column("panel_closed", sa.Boolean(), nullable=False),
        sa.Column("panel", sa.Text(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("verdict_entry", sa.String(length=64), nullable=False),
        sa.Column("slashed", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_verification_cases_status", "verification_cases", ["status"])
    runs = op.create_table(
        "verification_runs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("case_job", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("paid_by", sa.String(length=8), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_verification_runs_case", "verification_runs", ["case_job", "seq"])
    records = op.create_table(
        "audit_records",
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("clean_jobs", sa.Integer(), nullable=False),
        sa.Column("faults", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node"),
    )
    partners = op.create_table(
        "audit_partners",
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node", "partner"),
    )
    _move_rows(op.get_bind(), cases, runs, records, partners)


def _move_rows(conn: Any, cases: Any, runs: Any, records: Any, partners: Any) -> None:
    rows: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in _KINDS}
    for r in conn.execute(sa.select(_state).where(_state.c.kind.in_(_KINDS))):
        rows[r.kind][r.key] = json.loads(r.body)
    marks = rows["audit_run"]
    for job_id, v in rows["verification"].items():
        conn.execute(cases.insert().values(
            job_id=job_id, node=str(v["node"]), mode=str(v["mode"]),
            replicas=int(v.get("replicas", 1)), status=str(v["status"]),
            result_seq=int(v.get("result_seq", 0)), result_hash=str(v.get("result_hash", "")),
            held_at=int(v.get("held_at", 0)), beacon=str(v.get("beacon", "")),
            rate_bps=int(v.get("rate_bps", 0)), draw=int(v.get("draw", 0)),
            audited=bool(v.get("audited", False)), decided_at=v.get("decided_at"),
            release_at=v.get("release_at"), auditor=v.get("auditor"),
            audit_job=v.get("audit_job"), auditors=json.dumps(v.get("auditors", [])),
            comparison=json.dumps(v["comparison"]) if v.get("comparison") else None,
            panel_closed=bool(v.get("panel_closed", False)),
            panel=json.dumps(v.get("panel", [])), verdict=v.get("verdict"),
            verdict_entry=str(v.get("verdict_entry", "")),
            slashed=json.dumps(v.get("slashed", [])), reason=str(v.get("reason", ""))))
        for seq, run in enumerate(v.get("runs", [])):
            mark = marks.get(str(run["job"]), {})
            conn.execute(runs.insert().values(
                job_id=str(run["job"]), case_job=job_id, seq=seq, role=str(run["role"]),
                node=str(run["node"]), slot=int(run.get("slot", 0)),
                paid_by=str(mark.get("paid_by", "pool")),
                paid=run.get("paid"), retired=bool(mark.get("retired", False))))
    for node, rec in rows["audit_record"].items():
        conn.execute(records.insert().values(node=node, clean_jobs=int(rec.get("clean_jobs", 0)),
                                             faults=int(rec.get("faults", 0))))
        seen: dict[str, int] = {}
        for partner, at in rec.get("partners", []):
            seen[str(partner)] = max(int(at), seen.get(str(partner), 0))
        for partner, at in seen.items():
            conn.execute(partners.insert().values(node=node, partner=partner, at=at))
    conn.execute(sa.delete(_state).where(_state.c.kind.in_(_KINDS)))


def downgrade() -> None:
    op.drop_index("ix_verification_runs_case", table_name="verification_runs")
    op.drop_table("verification_runs")
    op.drop_index("ix_verification_cases_status", table_name="verification_cases")
    op.drop_table("verification_cases")
    op.drop_table("audit_partners")
    op.drop_table("audit_records")
