"""Read queries behind the dashboard's figures (and the heartbeat's uptime credits).

Aggregates run in SQL (group by, count, sum) so that a page over 10,000 jobs and 1,000
nodes reads a few rows per figure, never every job.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, func, select

from nosgrid.core.jobs.state import JobState
from nosgrid.store import tables as t
from nosgrid.store.repositories import upsert


class DashboardReads:
    """Figures for the dashboard's routes; plus :meth:`credit_uptime`, the one write."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- uptime ----------------------------------------------------------------------------

    def last_seen(self, node_id: str) -> float | None:
        """The latest heartbeat credited for ``node_id`` (None: none yet)."""
        value = self.conn.execute(
            select(t.node_uptime.c.last_at).where(t.node_uptime.c.node_id == node_id)
            .order_by(t.node_uptime.c.hour.desc()).limit(1)).scalar()
        return None if value is None else float(value)

    def credit_uptime(self, node_id: str, hours: list[tuple[int, float]], at: float) -> None:
        """Add ``(hour, seconds)`` credits; the row of ``at``'s hour records ``at``."""
        last_hour = int(at // 3600)
        if not hours or hours[-1][0] != last_hour:
            hours = [*hours, (last_hour, 0.0)]
        for hour, seconds in hours:
            row = self.conn.execute(select(t.node_uptime.c.seconds).where(
                t.node_uptime.c.node_id == node_id, t.node_uptime.c.hour == hour)).scalar()
            self.conn.execute(upsert(self.conn, t.node_uptime, {
                "node_id": node_id, "hour": hour, "seconds": float(row or 0.0) + seconds,
                "last_at": at}, ["node_id", "hour"]))

    def uptime_seconds(self, node_id: str, since_hour: int) -> float:
        value = self.conn.execute(select(func.sum(t.node_uptime.c.seconds)).where(
            t.node_uptime.c.node_id == node_id, t.node_uptime.c.hour >= since_hour)).scalar()
        return float(value or 0.0)

    # -- jobs --------------------------------------------------------------------------------

    def jobs_by_state(self, *, market: str | None = None,
                      node: str | None = None) -> dict[str, int]:
        query = select(t.jobs.c.state, func.count()).group_by(t.jobs.c.state)
        if market is not None:
            query = query.where(t.jobs.c.market == market)
        if node is not None:
            query = query.where(t.jobs.c.node == node)
        return {str(s): int(n) for s, n in self.conn.execute(query)}

    def finished_since(self, market: str, since: int) -> tuple[int, int]:
        """(jobs that ended at or after ``since``, their billed seconds) in ``market``."""
        row = self.conn.execute(
            select(func.count(), func.coalesce(func.sum(t.jobs.c.seconds_used), 0))
            .where(t.jobs.c.market == market, t.jobs.c.finished_at >= since)).one()
        return int(row[0]), int(row[1])

    def nodes_online(self, market: str) -> int:
        """Online nodes serving ``market`` (reads two columns, parses no hardware report)."""
        rows = self.conn.execute(select(t.nodes.c.markets).where(t.nodes.c.status == "online"))
        return sum(1 for r in rows if market in json.loads(r.markets))

    def queued_in(self, market: str) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t.jobs).where(
            t.jobs.c.state == JobState.QUEUED.value, t.jobs.c.market == market)).scalar() or 0)

    # -- ledger ------------------------------------------------------------------------------

    def credits_by_day(self, account: str, since: int) -> dict[int, int]:
        """Amounts paid into ``account`` per UTC day (midnight → sum) from ``since`` on."""
        day = (t.journal.c.at - t.journal.c.at % 86_400).label("day")
        rows = self.conn.execute(
            select(day, func.sum(t.postings.c.amount))
            .select_from(t.postings.join(t.journal, t.journal.c.seq == t.postings.c.entry_seq))
            .where(and_(t.postings.c.dst == account, t.journal.c.at >= since))
            .group_by(day))
        return {int(d): int(a) for d, a in rows}

    def credits_total(self, account: str) -> int:
        return int(self.conn.execute(select(func.coalesce(func.sum(t.postings.c.amount), 0))
                                     .where(t.postings.c.dst == account)).scalar() or 0)

    def accounts(self, prefix: str | None, limit: int) -> list[tuple[str, int]]:
        query = select(t.accounts.c.name, t.accounts.c.balance).order_by(
            t.accounts.c.balance.desc(), t.accounts.c.name).limit(limit)
        if prefix:
            query = query.where(t.accounts.c.name.startswith(prefix, autoescape=True))
        return [(str(n), int(b)) for n, b in self.conn.execute(query)]

    def anchors(self, limit: int) -> list[dict[str, Any]]:
        """The latest ledger anchors in the settlement outbox (newest first)."""
        o = t.settlement_outbox
        rows = self.conn.execute(select(o.c.seq, o.c.entry_hash, o.c.status, o.c.signature)
                                 .where(o.c.kind == "anchor").order_by(o.c.id.desc())
                                 .limit(limit))
        return [{"seq": None if r.seq is None else int(r.seq), "entry_hash": r.entry_hash,
                 "status": r.status, "signature": r.signature} for r in rows]
