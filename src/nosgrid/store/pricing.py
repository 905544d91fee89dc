"""Persistence of the price oracle: reporter keys, asks and signed reports, standings, the
published price of each closed epoch, and the settled jobs' prices (read from ``jobs``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import Connection, and_, delete, select, update

from nosgrid.core.jobs.state import JobState
from nosgrid.core.pricing import Observation, PricePoint, Report, SourceKind, Standing
from nosgrid.store import tables as t
from nosgrid.store.repositories import _insert, upsert

#: the most settled jobs of one market an aggregate reads (the newest)
MAX_SETTLED_ROWS: Final = 2_000
#: the most asks and reports of one market an aggregate reads (the newest)
MAX_REPORT_ROWS: Final = 20_000


@dataclass(frozen=True, slots=True)
class Reporter:
    key: str
    operator: str
    consent: str
    registered_at: int


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A report or ask row as stored, with what its key signed."""

    report: Report
    kind: SourceKind
    signature: str
    signed: Mapping[str, Any]
    evidence: bool


@dataclass(frozen=True, slots=True)
class PublishedPrice:
    """One closed epoch's row: its price (None: too few sources) and why."""

    market: str
    epoch: int
    price: int | None
    sources: int
    reason: str
    at: int


def _report(row: Any) -> StoredReport:
    r = Report(source=row.source, operator=row.operator, market=row.market,
               epoch=int(row.epoch), price=int(row.price), at=int(row.at), hash=row.hash)
    return StoredReport(r, cast(SourceKind, row.kind), row.signature, json.loads(row.signed),
                        bool(row.evidence))


class PricingRepo:
    """The oracle's tables."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- reporters -----------------------------------------------------------------------

    def reporter(self, key: str) -> Reporter | None:
        row = self.conn.execute(select(t.oracle_reporters).where(
            t.oracle_reporters.c.key == key)).first()
        return None if row is None else Reporter(row.key, row.operator, row.consent,
                                                 int(row.registered_at))

    def operators_of(self, keys: Iterable[str]) -> dict[str, str]:
        """The operator each of ``keys`` reports for (keys that are no reporter: absent)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        c = t.oracle_reporters.c
        return {r.key: r.operator for r in self.conn.execute(
            select(c.key, c.operator).where(c.key.in_(wanted)))}

    def add_reporter(self, reporter: Reporter) -> None:
        self.conn.execute(t.oracle_reporters.insert().values(
            key=reporter.key, operator=reporter.operator, consent=reporter.consent,
            registered_at=reporter.registered_at))

    # -- reports and asks ----------------------------------------------------------------

    def reports_of(self, source: str, market: str, epoch: int) -> list[Report]:
        """The key's reports (not asks) for one market and epoch, oldest first."""
        c = t.oracle_reports.c
        rows = self.conn.execute(select(t.oracle_reports).where(
            c.source == source, c.market == market, c.epoch == epoch, c.kind == "report"
        ).order_by(c.at, c.id))
        return [_report(r).report for r in rows]

    def add(self, report: Report, *, kind: SourceKind, signature: str,
            signed: Mapping[str, Any], evidence: bool = False) -> None:
        r = report
        self.conn.execute(t.oracle_reports.insert().values(
            hash=r.hash, source=r.source, operator=r.operator, kind=kind, market=r.market,
            epoch=r.epoch, price=r.price, at=r.at, signature=signature,
            signed=json.dumps(dict(signed), sort_keys=True, separators=(",", ":")),
            evidence=evidence))

    def replace_ask(self, ask: Report, *, signature: str, signed: Mapping[str, Any]) -> None:
        """A node's new ask for a market replaces its earlier one."""
        c = t.oracle_reports.c
        self.conn.execute(delete(t.oracle_reports).where(
            c.source == ask.source, c.market == ask.market, c.kind == "ask"))
        self.add(ask, kind="ask", signature=signature, signed=signed)

    def mark_evidence(self, hashes: Iterable[str]) -> None:
        self.conn.execute(update(t.oracle_reports).where(
            t.oracle_reports.c.hash.in_(list(hashes))).values(evidence=True))

    def by_hash(self, digest: str) -> StoredReport | None:
        row = self.conn.execute(select(t.oracle_reports).where(
            t.oracle_reports.c.hash == digest)).first()
        return None if row is None else _report(row)

    def observations(self, market: str, since: int, until: int
                     ) -> tuple[list[Observation], list[Report]]:
        """The asks and reports of ``market`` stored in ``[since, until]`` (newest first, at
        most ``MAX_REPORT_ROWS``), and the reports among them."""
        c = t.oracle_reports.c
        rows = self.conn.execute(select(
            c.source, c.operator, c.kind, c.market, c.epoch, c.price, c.at, c.hash).where(
            c.market == market, c.at >= since, c.at <= until
        ).order_by(c.at.desc(), c.id.desc()).limit(MAX_REPORT_ROWS))
        obs, reports = [], []
        for r in rows:
            kind = cast(SourceKind, r.kind)
            obs.append(Observation(r.source, r.operator, kind, int(r.price), int(r.at),
                                   int(r.epoch), r.hash))
            if kind == "report":
                reports.append(Report(r.source, r.operator, r.market, int(r.epoch),
                                      int(r.price), int(r.at), r.hash))
        return obs, reports

    def settled_prices(self, market: str, since: int, until: int) -> list[Observation]:
        """The price per second of each job of ``market`` its node completed and that
        settled, finished in ``[since, until]`` (the node is the source and operator)."""
        j = t.jobs.c
        rows = self.conn.execute(select(j.node, j.price_per_second, j.finished_at).where(
            j.state == JobState.SETTLED.value, j.market == market, j.outcome == "completed",
            j.node.is_not(None), j.finished_at >= since, j.finished_at <= until
        ).order_by(j.rowid_.desc()).limit(MAX_SETTLED_ROWS))
        return [Observation(r.node, r.node, "settled", int(r.price_per_second),
                            int(r.finished_at)) for r in rows]

    def prune(self, before: int) -> int:
        """Forget asks and reports stored before ``before`` (evidence stays)."""
        c = t.oracle_reports.c
        res = self.conn.execute(delete(t.oracle_reports).where(
            c.at < before, c.evidence.is_(False)))
        return int(res.rowcount or 0)

    # -- standings -----------------------------------------------------------------------

    def standings(self, market: str) -> dict[str, Standing]:
        s = t.oracle_standings.c
        rows = self.conn.execute(select(t.oracle_standings).where(s.market == market))
        return {r.operator: Standing(r.operator, int(r.weight_bps), int(r.deviations),
                                     int(r.epoch)) for r in rows}

    def save_standings(self, market: str, standings: Iterable[Standing]) -> None:
        for st in standings:
            self.conn.execute(upsert(self.conn, t.oracle_standings, {
                "market": market, "operator": st.operator, "weight_bps": st.weight_bps,
                "deviations": st.deviations, "epoch": st.epoch}, ("market", "operator")))

    # -- published prices ----------------------------------------------------------------

    def published(self, market: str, epoch: int) -> PublishedPrice | None:
        p = t.oracle_prices.c
        row = self.conn.execute(select(t.oracle_prices).where(
            p.market == market, p.epoch == epoch)).first()
        return None if row is None else _published(row)

    def latest_published(self, market: str, *, since_epoch: int) -> PublishedPrice | None:
        """The newest closed epoch's row at or after ``since_epoch``."""
        p = t.oracle_prices.c
        row = self.conn.execute(select(t.oracle_prices).where(
            p.market == market, p.epoch >= since_epoch).order_by(p.epoch.desc()).limit(1)
        ).first()
        return None if row is None else _published(row)

    def last_price(self, market: str, *, before_epoch: int) -> PricePoint | None:
        """The newest epoch before ``before_epoch`` that had a price (the move bound's
        anchor)."""
        p = t.oracle_prices.c
        row = self.conn.execute(select(p.epoch, p.price).where(
            and_(p.market == market, p.epoch < before_epoch, p.price.is_not(None))
        ).order_by(p.epoch.desc()).limit(1)).first()
        return None if row is None else PricePoint(int(row.epoch), int(row.price))

    def publish(self, row: PublishedPrice) -> bool:
        """Record a closed epoch's price once; False when it was recorded before."""
        res = self.conn.execute(_insert(self.conn, t.oracle_prices).values(
            market=row.market, epoch=row.epoch, price=row.price, sources=row.sources,
            reason=row.reason, at=row.at).on_conflict_do_nothing())
        return bool(res.rowcount)

    def markets_with_sources(self) -> Sequence[str]:
        """Every market name an ask or a report was stored for (``nos_usd`` included)."""
        return [str(m) for m in self.conn.execute(
            select(t.oracle_reports.c.market).distinct()).scalars()]


def _published(row: Any) -> PublishedPrice:
    return PublishedPrice(row.market, int(row.epoch),
                          None if row.price is None else int(row.price), int(row.sources),
                          row.reason, int(row.at))
