"""Price oracle use cases: reporters, asks and reports in; each closed epoch's price out.

The sources of a market (``core/pricing.py`` has the rule and its security argument):

* **asks**: a registered node serving the market publishes its price per second
  (:func:`publish_ask`; its latest counts);
* **settled jobs**: the price per second of the jobs the market's nodes completed and
  settled recently (read from the jobs table);
* **reports**: a registered reporter key signs a price for the open epoch
  (:func:`submit_report`); ``nos_usd`` reports are the NOS/USD rate.

Only an operator holding an active stake of at least ``min_reporter_stake`` counts (a
Sybil needs a stake per identity); a key registered as a reporter counts for its
operator in every kind, so one operator counts once. A key that signs two prices for one
epoch is slashed at once (``Offence.EQUIVOCATION``, both reports' hashes as evidence)
and its operator is excluded from the epoch.

The maintenance loop closes epochs (:func:`close_epoch`): the last closed epoch of every
market (and ``nos_usd``) is aggregated once, at the epoch's end, its price published and
the standings updated. Quotes read the newest published price no older than
``FRESH_EPOCHS`` epochs; without one the market's configured price is used, visibly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from nosgrid.coordinator.services import economics
from nosgrid.core.errors import (
    BadSignature,
    Conflict,
    Forbidden,
    InvalidInput,
    MarketNotFound,
    NotFound,
)
from nosgrid.core.events import OraclePricePublished, ReportEquivocated
from nosgrid.core.jobs.state import Job
from nosgrid.core.markets import NOS_USD, MarketParams
from nosgrid.core.money import TOTAL_SUPPLY, format_nos
from nosgrid.core.pricing import (
    DEFAULT_ORACLE,
    MarketQuote,
    Observation,
    OracleParams,
    OraclePrice,
    Report,
    aggregate,
    base_units_to_usd_micros,
    check_report,
    epoch_of,
    quote,
    report_hash,
    reporter_consent_message,
    signature_valid,
    update_standings,
)
from nosgrid.core.slashing import Offence
from nosgrid.core.views import (
    MarketPriceView,
    NosUsdView,
    OracleEpochView,
    OracleReportView,
    OracleSourceView,
    ReporterView,
)
from nosgrid.store.db import UnitOfWork
from nosgrid.store.pricing import PublishedPrice, Reporter, StoredReport

#: a published price older than this many epochs is no longer used (configured fallback)
FRESH_EPOCHS: Final = 3
#: the highest NOS/USD rate a report may carry (µUSD per NOS: $1,000,000 per NOS)
MAX_NOS_USD_MICROS: Final = 10**12


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The exact request a key signed (a report's evidence): anyone re-checks it with
    ``core.identity.request_message`` and ``core.pricing.signature_valid``."""

    message: bytes
    signature: str
    method: str
    path: str
    timestamp: int
    nonce: str
    body: Mapping[str, Any]

    @property
    def hash(self) -> str:
        return report_hash(self.message)

    def signed(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "timestamp": self.timestamp,
                "nonce": self.nonce, "body": dict(self.body)}


# ------------------------------------------------------------------------------ reporters


def _active_stake(uow: UnitOfWork, owner: str) -> int:
    account = uow.economics.stake(owner)
    return account.market_stake if account is not None else 0


def _need_stake(uow: UnitOfWork, operator: str, params: OracleParams) -> int:
    stake = _active_stake(uow, operator)
    if stake < params.min_reporter_stake:
        raise Forbidden(
            f"operator {operator} holds an active stake of {format_nos(stake)} NOS; a price "
            f"source needs {format_nos(params.min_reporter_stake)} NOS (`nosgrid stake`)",
            stake=stake, min_stake=params.min_reporter_stake)
    return stake


def register_reporter(uow: UnitOfWork, *, reporter: str, operator: str, consent: str,
                      now: int, params: OracleParams = DEFAULT_ORACLE) -> ReporterView:
    """Bind ``reporter`` (who signed the request) to ``operator``, whose signature of
    ``core.pricing.reporter_consent_message(reporter)`` is ``consent``. The operator must
    hold the reporter stake. Registering the same binding again answers the first one."""
    if not signature_valid(operator, consent, reporter_consent_message(reporter)):
        raise BadSignature(f"`consent` is not {operator}'s signature of "
                           f"'{reporter_consent_message(reporter).decode()}'; sign it with "
                           "the operator's keypair (SDK: reporter_consent)")
    stake = _need_stake(uow, operator, params)
    existing = uow.pricing.reporter(reporter)
    if existing is not None and existing.operator != operator:
        raise Conflict(f"key {reporter} already reports for operator {existing.operator}; "
                       "use another key", operator=existing.operator)
    if existing is None:
        existing = Reporter(reporter, operator, consent, now)
        uow.pricing.add_reporter(existing)
    return ReporterView(key=reporter, operator=operator, registered_at=existing.registered_at,
                        stake=stake, min_stake=params.min_reporter_stake)


def reporter_view(uow: UnitOfWork, key: str, params: OracleParams = DEFAULT_ORACLE
                  ) -> ReporterView:
    r = uow.pricing.reporter(key)
    if r is None:
        raise NotFound(f"{key} is no registered price reporter")
    return ReporterView(key=r.key, operator=r.operator, registered_at=r.registered_at,
                        stake=_active_stake(uow, r.operator),
                        min_stake=params.min_reporter_stake)


# ------------------------------------------------------------------------------ sources in


def _check_target(uow: UnitOfWork, market: str, price: int) -> None:
    if market != NOS_USD and uow.markets.find(market) is None:
        raise MarketNotFound(f"no market {market!r}; `nosgrid market list` shows the markets "
                             f"(NOS/USD reports go to {NOS_USD!r})")
    top = MAX_NOS_USD_MICROS if market == NOS_USD else TOTAL_SUPPLY
    if not 1 <= price <= top:
        raise InvalidInput(f"price {price} is outside 1..{top} "
                           + ("µUSD per NOS" if market == NOS_USD else "base units per second"),
                           field="price")


def _report_view(stored: StoredReport, status: str, *, slashed: int = 0,
                 conflicts: tuple[str, ...] = ()) -> OracleReportView:
    r = stored.report
    return OracleReportView.model_validate({
        "hash": r.hash, "source": r.source, "operator": r.operator, "kind": stored.kind,
        "market": r.market, "epoch": r.epoch, "price": r.price, "at": r.at,
        "signature": stored.signature, "signed": dict(stored.signed),
        "evidence": stored.evidence, "status": status, "slashed": slashed,
        "conflicts_with": list(conflicts)})


def submit_report(uow: UnitOfWork, *, source: str, market: str, epoch: int, price: int,
                  request: SignedRequest, now: int, params: OracleParams = DEFAULT_ORACLE
                  ) -> OracleReportView:
    """Store a reporter's signed price for the open epoch of ``market`` (or ``nos_usd``).

    The same price again is a ``duplicate`` (the first report answers, nothing is
    stored); a second price is an ``equivocation``: stored as evidence with the first,
    and the operator is slashed with both hashes; after that the key's reports for the
    epoch are refused (409).
    """
    _check_target(uow, market, price)
    reporter = uow.pricing.reporter(source)
    if reporter is None:
        raise Forbidden(f"{source} is no registered price reporter; register it first "
                        "(`nosgrid market reporter register`)")
    open_epoch = epoch_of(now, params)
    if epoch != open_epoch:
        raise InvalidInput(f"epoch {epoch} is not the open epoch {open_epoch} (epochs are "
                           f"{params.epoch_seconds}s: unix time // {params.epoch_seconds})",
                           field="epoch", open_epoch=open_epoch)
    new = Report(source, reporter.operator, market, epoch, price, now, request.hash)
    check = check_report(uow.pricing.reports_of(source, market, epoch), new)
    if check.status == "equivocated":
        raise Conflict(f"{source} signed two prices for {market} epoch {epoch} and was "
                       "slashed; its reports are refused until the next epoch")
    _need_stake(uow, reporter.operator, params)
    if check.status == "duplicate" and check.same_as is not None:
        first = uow.pricing.by_hash(check.same_as.hash)
        assert first is not None
        return _report_view(first, "duplicate")
    finding = check.finding
    uow.pricing.add(new, kind="report", signature=request.signature,
                    signed=request.signed(), evidence=finding is not None)
    stored = uow.pricing.by_hash(new.hash)
    assert stored is not None
    if finding is None:
        return _report_view(stored, "accepted")
    uow.pricing.mark_evidence(finding.evidence)
    uow.publish(ReportEquivocated(at=now, source=source, operator=finding.operator,
                                  market=market, epoch=epoch, reports=finding.evidence))
    slashed = economics.slash_for(uow, None, Offence.EQUIVOCATION, now,
                                  offender=finding.operator, reports=finding.evidence)
    stored = replace(stored, evidence=True)
    return _report_view(stored, "equivocation", slashed=slashed, conflicts=finding.evidence)


def publish_ask(uow: UnitOfWork, *, node: str, market: str, price: int,
                request: SignedRequest, now: int, params: OracleParams = DEFAULT_ORACLE
                ) -> OracleReportView:
    """A node's ask for ``market`` (base units per second); it replaces the node's
    earlier ask. The node must be registered, serve the market and hold the stake."""
    if market == NOS_USD:
        raise InvalidInput(f"nodes ask prices of markets; {NOS_USD!r} takes reports only",
                           field="market")
    _check_target(uow, market, price)
    info = uow.nodes.get(node)  # NodeNotFound: register the node first
    if market not in info["markets"]:
        raise Forbidden(f"node {node} does not serve market {market!r}; it asks only in "
                        f"its markets ({', '.join(info['markets']) or 'none'})")
    operator = uow.pricing.operators_of([node]).get(node, node)
    _need_stake(uow, operator, params)
    ask = Report(node, operator, market, epoch_of(now, params), price, now, request.hash)
    uow.pricing.replace_ask(ask, signature=request.signature, signed=request.signed())
    stored = uow.pricing.by_hash(ask.hash)
    assert stored is not None
    return _report_view(stored, "accepted")


def report(uow: UnitOfWork, digest: str) -> OracleReportView:
    """A stored report or ask by its hash (an equivocation's evidence stays stored)."""
    stored = uow.pricing.by_hash(digest)
    if stored is None:
        raise NotFound(f"no stored report {digest}")
    return _report_view(stored, "stored")


# ------------------------------------------------------------------------------ aggregate


def observations(uow: UnitOfWork, market: str, now: int,
                 params: OracleParams = DEFAULT_ORACLE) -> tuple[list[Observation],
                                                                  list[Report]]:
    """Every source of ``market`` that may be fresh at ``now``, each under its operator,
    only from operators holding the reporter stake; and the reports among them."""
    since = now - max(params.max_age_ask_s, params.max_age_report_s)
    obs, reports = uow.pricing.observations(market, since, now)
    if market != NOS_USD:
        obs += uow.pricing.settled_prices(market, now - params.max_age_settled_s, now)
    operators = uow.pricing.operators_of(o.source for o in obs if o.kind != "report")
    obs = [replace(o, operator=operators.get(o.source, o.operator)) if o.kind != "report"
           else o for o in obs]
    staked = {op for op in {o.operator for o in obs}
              if _active_stake(uow, op) >= params.min_reporter_stake}
    return [o for o in obs if o.operator in staked], reports


def aggregate_now(uow: UnitOfWork, market: str, epoch: int, now: int,
                  params: OracleParams = DEFAULT_ORACLE) -> OraclePrice:
    """The aggregate of ``market`` for ``epoch`` from the sources fresh at ``now`` (an
    equivocation among the fresh reports, of this epoch or an earlier one still fresh,
    excludes its operator)."""
    obs, reports = observations(uow, market, now, params)
    return aggregate(market, obs, epoch=epoch, now=now,
                     previous=uow.pricing.last_price(market, before_epoch=epoch),
                     standings=uow.pricing.standings(market),
                     reports=reports, params=params)


def close_epoch(uow: UnitOfWork, now: int, params: OracleParams = DEFAULT_ORACLE
                ) -> list[OraclePrice]:
    """Publish the last closed epoch's price of every market and ``nos_usd`` (once each:
    a market already published for it is skipped) and update its standings. An epoch the
    coordinator was down for is not made up (the move bound compounds over the gap)."""
    epoch = epoch_of(now, params) - 1
    end = (epoch + 1) * params.epoch_seconds - 1
    closed = []
    for market in [*uow.markets.names(), NOS_USD]:
        if uow.pricing.published(market, epoch) is not None:
            continue
        agg = aggregate_now(uow, market, epoch, end, params)
        uow.pricing.publish(PublishedPrice(market, epoch, agg.price, agg.sources, agg.reason,
                                           now))
        changed = update_standings(agg, uow.pricing.standings(market), params)
        uow.pricing.save_standings(market, changed.values())
        uow.publish(OraclePricePublished(at=now, market=market, epoch=epoch, price=agg.price,
                                         sources=agg.sources))
        closed.append(agg)
    if closed:
        uow.pricing.prune(now - 2 * max(params.max_age_ask_s, params.max_age_report_s))
    return closed


def published(uow: UnitOfWork, market: str, now: int, params: OracleParams = DEFAULT_ORACLE
              ) -> OraclePrice | None:
    """The newest published epoch of ``market`` no older than ``FRESH_EPOCHS`` (None: none
    published; ``price`` None: too few sources then)."""
    row = uow.pricing.latest_published(market, since_epoch=epoch_of(now, params)
                                       - FRESH_EPOCHS)
    if row is None:
        return None
    return OraclePrice(market, row.epoch, row.price, row.reason, row.sources,
                       params.min_sources)


def market_quote(uow: UnitOfWork, market: MarketParams, now: int,
                 params: OracleParams = DEFAULT_ORACLE) -> MarketQuote:
    """The market's reference price and what a job posted now is charged."""
    return quote(market, published(uow, market.name, now, params),
                 published(uow, NOS_USD, now, params))


def charged_market(uow: UnitOfWork, market: MarketParams, now: int,
                   params: OracleParams = DEFAULT_ORACLE) -> tuple[MarketParams, int | None]:
    """The terms a job posted now runs under: a USD-quoted market at its USD price
    converted at the oracle's NOS/USD rate (and the rate), else the market as it is."""
    if market.price_usd_micros_per_second is None:
        return market, None
    q = market_quote(uow, market, now, params)
    return market.at_price(q.charged), q.nos_usd_rate


# ------------------------------------------------------------------------------ views


def epoch_view(agg: OraclePrice, *, final: bool) -> OracleEpochView:
    return OracleEpochView(
        market=agg.market, epoch=agg.epoch, price=agg.price, reason=agg.reason, final=final,
        sources=agg.sources, min_sources=agg.min_sources, median=agg.median,
        band_low=agg.band[0] if agg.band else None,
        band_high=agg.band[1] if agg.band else None,
        previous=agg.previous.price if agg.previous else None,
        previous_epoch=agg.previous.epoch if agg.previous else None, bounded=agg.bounded,
        stale=agg.stale, duplicates=agg.duplicates,
        operators=[OracleSourceView(operator=o.operator, value=o.value, weight=o.weight,
                                    kinds=list(o.kinds), outlier=o.outlier)
                   for o in agg.operators],
        equivocators=sorted({f.operator for f in agg.equivocations}))


def provisional(uow: UnitOfWork, market: str, now: int,
                params: OracleParams = DEFAULT_ORACLE) -> OracleEpochView:
    """The open epoch's aggregate from the sources fresh now (not published yet)."""
    return epoch_view(aggregate_now(uow, market, epoch_of(now, params), now, params),
                      final=False)


def price_view(uow: UnitOfWork, market: MarketParams, now: int,
               params: OracleParams = DEFAULT_ORACLE) -> MarketPriceView:
    """``GET /v1/markets/{name}/price``: the reference price, its source, the charge."""
    q = market_quote(uow, market, now, params)
    rate = published(uow, NOS_USD, now, params)
    nos_usd = rate.price if rate is not None else None
    return MarketPriceView(
        market=market.name, source=q.source, reason=q.reason, price_per_second=q.reference,
        price_per_second_nos=format_nos(q.reference), epoch=q.epoch if q.source == "oracle"
        else None, configured_price_per_second=market.price_per_second,
        charged_price_per_second=q.charged, charged_reason=q.charged_reason,
        price_usd_micros_per_second=market.price_usd_micros_per_second, nos_usd_rate=nos_usd,
        price_usd_micros=None if nos_usd is None
        else base_units_to_usd_micros(q.reference, nos_usd),
        provisional=provisional(uow, market.name, now, params))


def nos_usd_view(uow: UnitOfWork, now: int, params: OracleParams = DEFAULT_ORACLE
                 ) -> NosUsdView:
    rate = published(uow, NOS_USD, now, params)
    value = rate.price if rate is not None else None
    if rate is None:
        reason = "no NOS/USD rate published yet"
    else:
        reason = rate.reason if value is not None else f"too few fresh sources: {rate.reason}"
    return NosUsdView(rate=value, rate_usd=None if value is None else _usd(value),
                      epoch=None if rate is None else rate.epoch, reason=reason,
                      provisional=provisional(uow, NOS_USD, now, params))


def _usd(micros: int) -> str:
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


def signed_body(raw: bytes) -> dict[str, Any]:
    """A request body as stored with its report (JSON object; else its text)."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}


def post_answer(uow: UnitOfWork, job: Job, *, max_price_given: bool, now: int,
                params: OracleParams = DEFAULT_ORACLE) -> dict[str, Any]:
    """What the answer to a post adds about prices: how the job's price was set and,
    posted without a max price, a suggested one (the reference price × its timeout;
    the job is charged as usual)."""
    market = uow.markets.get(job.market)
    q = market_quote(uow, market, now, params)
    out: dict[str, Any] = {"charged_reason": q.charged_reason}
    if not max_price_given:
        suggested = q.suggested_max_price(job.timeout)
        out.update(suggested_max_price=suggested, suggested_max_price_nos=format_nos(suggested),
                   suggested_price_source=q.source,
                   suggested_price_why=f"{q.reason}: {format_nos(q.reference)} NOS/s × "
                   f"{job.timeout}s")
    return out
