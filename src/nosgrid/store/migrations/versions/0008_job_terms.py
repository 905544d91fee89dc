"""jobs.terms: the terms a job was posted under (market, timeout, max price, verification,
tolerance, replicas, input blobs), parsed once instead of read again from the spec

Existing rows get terms from their stored definition's ``meta.nosgrid`` and their own
columns, as the coordinator read them before this revision.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("market", sa.String),
                 sa.column("timeout", sa.Integer), sa.column("spec_hash", sa.String),
                 sa.column("terms", sa.Text))
_specs = sa.table("specs", sa.column("hash", sa.String), sa.column("body", sa.Text))
_MODES = ("deterministic", "tolerance", "none")


def _terms(market: str, timeout: int, spec_body: str | None) -> str:
    try:
        meta = json.loads(spec_body or "{}").get("meta") or {}
    except (ValueError, AttributeError):
        meta = {}
    found = meta.get("nosgrid") if isinstance(meta, dict) else None
    extra: dict[str, Any] = found if isinstance(found, dict) else {}
    mode = extra.get("verification") if extra.get("verification") in _MODES else "none"
    replicas = extra.get("replicas")
    ok = isinstance(replicas, int) and 1 <= replicas <= 5 and mode != "none"
    body = {"market": market, "timeout": timeout, "max_price": None, "verification": mode,
            "abs_eps": 1e-9 if extra.get("abs_eps") is None else float(extra["abs_eps"]),
            "rel_eps": 1e-6 if extra.get("rel_eps") is None else float(extra["rel_eps"]),
            "replicas": replicas if ok else 1,
            "inputs": [str(b["sha256"]) for b in extra.get("inputs", [])
                       if isinstance(b, dict) and "sha256" in b]}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("terms", sa.Text(), nullable=False, server_default="{}"))
    conn = op.get_bind()
    specs = {str(r.hash): str(r.body) for r in conn.execute(sa.select(_specs.c.hash,
                                                                      _specs.c.body))}
    for r in conn.execute(sa.select(_jobs.c.id, _jobs.c.market, _jobs.c.timeout,
                                    _jobs.c.spec_hash)).all():
        conn.execute(sa.update(_jobs).where(_jobs.c.id == r.id).values(
            terms=_terms(r.market, int(r.timeout), specs.get(r.spec_hash))))
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("terms", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("terms")
