"""The price oracle: each market's reference price per second, and the NOS/USD rate, from
several independent sources that a minority of them cannot move.

Sources (:class:`Observation`, one value each, ``kind``):

* ``ask`` — the price per second a node publishes for a market (its latest counts);
* ``settled`` — the price per second of a job a node recently settled (the lower median
  of its recent jobs counts);
* ``report`` — a signed report by a registered, staked reporter key, for one epoch (its
  latest counts). Reports are the only source of the NOS/USD rate (µUSD per NOS).

**The rule** (:func:`aggregate`, per market and epoch, with ``now`` passed in):

1. Reports that **equivocate** (one key, one epoch, two prices: :func:`find_equivocations`)
   exclude the key's whole operator, and are returned as findings (a slash, with both
   reports' hashes as evidence: ``slashing.Offence.EQUIVOCATION``).
2. **Staleness**: an observation older than its kind's ``max_age_*_s`` (or from the
   future) is dropped. **Duplicates**: one value per key and kind (the latest ask or
   report; the lower median of a node's settled jobs).
3. **One operator counts once**, however many keys (or kinds) it holds: its values are
   collapsed first, to their median weighted by kind (``weight_*_bps``). Its weight is
   its standing (below) times the largest kind weight it used.
4. Fewer than ``min_sources`` fresh operators: no price (``reason`` says so); the market
   falls back to its configured price, visibly (:func:`quote`).
5. Sorted operator values ``v_0 ≤ … ≤ v_{n−1}`` give the **band** ``[v_L, v_U]`` with
   ``L = ⌊(n−1)/2⌋`` and ``U = ⌊n/2⌋`` (the lower and upper medians), and the median
   ``m = ⌊(v_L + v_U)/2⌋``.
6. **Outliers**: an operator farther from ``m`` than ``max(k·MAD, m·floor)`` is rejected
   (``mad_multiple_bps``, ``mad_floor_bps``; MAD is the median absolute deviation).
7. The **weighted median** of the remaining operators, **clamped into the band**.
8. The **move bound**: clamped again into ``previous ± max(previous·b, 1)`` compounded
   per epoch since the previous price (``max_move_bps``; no bound after
   ``max_gap_epochs`` without a price).

**Standings** (:func:`update_standings`, once per closed epoch): an outlier's weight is cut
by ``penalty_bps`` (so repeated deviation decays it geometrically, down to
``min_weight_bps``), a clean epoch adds ``recovery_bps`` back (slowly, up to 100%); a new
operator starts at ``initial_weight_bps``, an equivocator drops to the minimum.

**Security argument.** Let ``n`` be the fresh, non-equivocating operators and suppose the
honest ones are a strict majority, ``h ≥ ⌊n/2⌋ + 1``, with values in ``[h_lo, h_hi]``
(an honest operator's collapsed value is a median of honest values, so it is in that
range too). At most ``n − h ≤ ⌈n/2⌉ − 1 = L`` values lie below ``h_lo``, so ``v_L``, the
``(L+1)``-th smallest, is ``≥ h_lo``; symmetrically at most ``L`` values lie above
``h_hi``, so ``v_U = v_{n−1−L}`` is ``≤ h_hi``. Hence the band ``[v_L, v_U]`` lies inside
the honest range, **whatever the weights, the outlier rejection or the attacker's
values** — step 7 clamps into it, and the band is computed from all fresh operators
before any rejection or weighting, so neither can break it (a weight only chooses a
point inside the band). Step 8 only moves the result towards the previous price: if the
previous price was in the honest range the result is between two points of it, so it
stays there (the range is an interval). By induction, starting from an honest (or
configured, honest-range) price, an attacker holding fewer than half of the operators can
never take the price outside the honest range, over any number of epochs, and never
moves it more than the bound in one epoch. Keys do not help: one operator counts once,
an operator's keys are bound to it by both signatures (the service's registration),
equivocation costs the stake, and each independent operator must hold its own stake.
What an attacker *can* do is pick a point inside the honest range (the edge of it), which
is the honest sources' own disagreement: the simulator measures it (``nosgrid sim``).

>>> p = OracleParams(min_sources=3)
>>> obs = [Observation(f"k{i}", f"op{i}", "report", v, at=100) for i, v in
...        enumerate([1000, 1010, 990, 10**9])]
>>> agg = aggregate("cpu", obs, epoch=1, now=120, params=p)
>>> agg.price, agg.band, [o.outlier for o in agg.operators][-1]
(1000, (1000, 1010), True)
>>> quote(MarketParams(name="cpu", price_per_second=7), agg, None).source
'oracle'
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from solders.pubkey import Pubkey
from solders.signature import Signature

from nosgrid.core.errors import InvalidInput
from nosgrid.core.markets import NOS_USD, MarketParams
from nosgrid.core.money import BASE_UNITS_PER_NOS, TOTAL_SUPPLY

__all__ = [
    "DEFAULT_ORACLE", "NOS_USD", "Equivocation", "MarketQuote", "Observation",
    "OperatorValue", "OracleParams", "OraclePrice", "PricePoint", "Report", "ReportCheck",
    "SourceKind", "Standing", "aggregate", "base_units_to_usd_micros", "check_report",
    "epoch_of", "find_equivocations", "move_band", "quote", "report_hash",
    "reporter_consent_message", "signature_valid", "update_standings", "usd_to_base_units",
    "weighted_median",
]

SourceKind = Literal["ask", "settled", "report"]
PriceSource = Literal["oracle", "configured"]
FULL_WEIGHT: Final = 10_000
MINUTE: Final = 60
#: what a reporter's operator signs to take the key as its own (base58 key appended)
CONSENT_PREFIX: Final = "nosgrid-oracle-reporter-v1:"


@dataclass(frozen=True, slots=True)
class OracleParams:
    """Every parameter of the oracle. Prices are base units per second (NOS/USD: µUSD per
    NOS); weights and moves are basis points.

    Defaults: 10-minute epochs; 3 independent operators at least; asks fresh for 30
    minutes, settled jobs for a day, reports for 2 epochs; outliers beyond 3 × MAD (or
    0.5% of the median, whichever is wider); at most 5% move per epoch; kind weights
    asks 50%, settled jobs 75%, reports 100%; a deviating epoch halves a source's weight
    (to 1% at least), a clean one gives back 5 points; newcomers start at 50%; a reporter
    (its operator) holds 100 NOS of stake.
    """

    epoch_seconds: int = 10 * MINUTE
    min_sources: int = 3
    max_age_ask_s: int = 30 * MINUTE
    max_age_settled_s: int = 24 * 60 * MINUTE
    max_age_report_s: int = 20 * MINUTE
    mad_multiple_bps: int = 30_000
    mad_floor_bps: int = 50
    max_move_bps: int = 500
    max_gap_epochs: int = 144
    weight_ask_bps: int = 5_000
    weight_settled_bps: int = 7_500
    weight_report_bps: int = 10_000
    penalty_bps: int = 5_000
    recovery_bps: int = 500
    min_weight_bps: int = 100
    initial_weight_bps: int = 5_000
    min_reporter_stake: int = 100 * BASE_UNITS_PER_NOS

    def __post_init__(self) -> None:
        if self.epoch_seconds < 1 or self.min_sources < 1 or self.max_gap_epochs < 1:
            raise InvalidInput("epoch_seconds, min_sources and max_gap_epochs must be >= 1")
        if min(self.max_age_ask_s, self.max_age_settled_s, self.max_age_report_s) < 0:
            raise InvalidInput("the maximum ages must be >= 0")
        if self.mad_multiple_bps < FULL_WEIGHT:
            raise InvalidInput("mad_multiple_bps must be >= 10000 (at least 1 × MAD), so at "
                               "least half of the sources are never outliers")
        bps = (self.mad_floor_bps, self.max_move_bps, self.weight_ask_bps,
               self.weight_settled_bps, self.weight_report_bps, self.penalty_bps,
               self.recovery_bps, self.min_weight_bps, self.initial_weight_bps)
        if not all(0 <= b <= FULL_WEIGHT for b in bps):
            raise InvalidInput("oracle basis points must be within 0..10000")
        if self.max_move_bps < 1 or self.min_weight_bps < 1:
            raise InvalidInput("max_move_bps and min_weight_bps must be >= 1")
        if self.min_reporter_stake < 0:
            raise InvalidInput("min_reporter_stake must be >= 0")

    def max_age(self, kind: SourceKind) -> int:
        return {"ask": self.max_age_ask_s, "settled": self.max_age_settled_s,
                "report": self.max_age_report_s}[kind]

    def kind_weight(self, kind: SourceKind) -> int:
        return {"ask": self.weight_ask_bps, "settled": self.weight_settled_bps,
                "report": self.weight_report_bps}[kind]


DEFAULT_ORACLE: Final = OracleParams()


def epoch_of(now: int, params: OracleParams = DEFAULT_ORACLE) -> int:
    """The oracle epoch ``now`` (unix seconds) falls in."""
    return now // params.epoch_seconds


# ------------------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True)
class Observation:
    """One value from one key: ``source`` published it, ``operator`` is who it counts for."""

    source: str
    operator: str
    kind: SourceKind
    value: int
    at: int
    #: reports: the epoch it was signed for, and its hash
    epoch: int | None = None
    hash: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """A reporter's signed price for one market (or ``nos_usd``) and epoch."""

    source: str
    operator: str
    market: str
    epoch: int
    price: int
    at: int
    hash: str

    def observation(self) -> Observation:
        return Observation(self.source, self.operator, "report", self.price, self.at,
                           self.epoch, self.hash)


def report_hash(signed_message: bytes) -> str:
    """A report is named by the sha256 of the exact bytes its key signed."""
    return hashlib.sha256(signed_message).hexdigest()


def reporter_consent_message(reporter: str) -> bytes:
    """What an operator key signs to take ``reporter`` as one of its reporter keys (the
    reporter signs its registration request itself, so the binding needs both)."""
    return (CONSENT_PREFIX + reporter).encode()


@dataclass(frozen=True, slots=True)
class Standing:
    """How much an operator's values count in one market, and its record."""

    operator: str
    weight_bps: int = DEFAULT_ORACLE.initial_weight_bps
    deviations: int = 0
    #: the last epoch that updated it (-1: none)
    epoch: int = -1


@dataclass(frozen=True, slots=True)
class PricePoint:
    """A closed epoch's price (the anchor of the next epoch's move bound)."""

    epoch: int
    price: int


# ------------------------------------------------------------------------------ equivocation


@dataclass(frozen=True, slots=True)
class Equivocation:
    """``source`` signed two different prices for ``market`` in ``epoch``: both hashes."""

    source: str
    operator: str
    market: str
    epoch: int
    first: str
    second: str
    prices: tuple[int, int]

    @property
    def evidence(self) -> tuple[str, str]:
        return (self.first, self.second)


ReportStatus = Literal["new", "duplicate", "equivocation", "equivocated"]


@dataclass(frozen=True, slots=True)
class ReportCheck:
    """What to do with a new report given the key's earlier ones for that epoch."""

    status: ReportStatus
    finding: Equivocation | None = None
    #: a duplicate: the earlier report it repeats
    same_as: Report | None = None


def check_report(earlier: Sequence[Report], new: Report) -> ReportCheck:
    """``new`` against the same key's ``earlier`` reports for the same market and epoch.

    The same price again is a **duplicate** (nothing to store, the first one answers);
    a different price is an **equivocation** (store it as evidence, slash); once a key
    has equivocated in an epoch, further reports there are refused (``equivocated``).

    >>> a = Report("k", "k", "cpu", 5, 100, 3000, "a" * 64)
    >>> check_report([a], replace(a, hash="b" * 64)).status
    'duplicate'
    >>> check_report([a], replace(a, price=101, hash="c" * 64)).finding.evidence[1][:3]
    'ccc'
    """
    same = [r for r in earlier if (r.source, r.market, r.epoch) == (new.source, new.market,
                                                                    new.epoch)]
    if len({r.price for r in same}) > 1:
        return ReportCheck("equivocated")
    if not same:
        return ReportCheck("new")
    first = min(same, key=lambda r: (r.at, r.hash))
    if first.price == new.price:
        return ReportCheck("duplicate", same_as=first)
    return ReportCheck("equivocation", Equivocation(
        new.source, new.operator, new.market, new.epoch, first.hash, new.hash,
        (first.price, new.price)))


def find_equivocations(reports: Iterable[Report]) -> tuple[Equivocation, ...]:
    """Every (key, market, epoch) with two different signed prices: its two first ones."""
    groups: dict[tuple[str, str, int], list[Report]] = defaultdict(list)
    for r in reports:
        groups[(r.source, r.market, r.epoch)].append(r)
    found = []
    for (source, market, epoch), group in sorted(groups.items()):
        group.sort(key=lambda r: (r.at, r.hash))
        other = next((r for r in group if r.price != group[0].price), None)
        if other is not None:
            found.append(Equivocation(source, group[0].operator, market, epoch,
                                      group[0].hash, other.hash, (group[0].price, other.price)))
    return tuple(found)


# ------------------------------------------------------------------------------ aggregate


@dataclass(frozen=True, slots=True)
class OperatorValue:
    """One independent operator's collapsed value in an epoch, and how it counted."""

    operator: str
    value: int
    weight: int
    kinds: tuple[SourceKind, ...]
    outlier: bool = False


@dataclass(frozen=True, slots=True)
class OraclePrice:
    """The oracle's answer for one market and epoch (``price`` None: too few sources)."""

    market: str
    epoch: int
    price: int | None
    reason: str
    sources: int
    min_sources: int
    median: int | None = None
    #: the lower and upper medians of all fresh operator values
    band: tuple[int, int] | None = None
    #: the weighted median of the inliers, before the band and the move bound
    weighted: int | None = None
    previous: PricePoint | None = None
    #: the move bound changed the result
    bounded: bool = False
    operators: tuple[OperatorValue, ...] = ()
    equivocations: tuple[Equivocation, ...] = ()
    stale: int = 0
    duplicates: int = 0


def weighted_median(pairs: Sequence[tuple[int, int]]) -> int:
    """The lower weighted median of ``(value, weight)`` pairs (plain lower median when
    every weight is 0).

    >>> weighted_median([(1, 1), (2, 1), (10, 5)])
    10
    >>> weighted_median([(1, 1), (2, 1), (3, 1), (4, 1)])
    2
    """
    if not pairs:
        raise InvalidInput("a median of nothing")
    ordered = sorted(pairs)
    total = sum(w for _, w in ordered)
    if total <= 0:
        return ordered[(len(ordered) - 1) // 2][0]
    acc = 0
    for value, w in ordered:
        acc += w
        if 2 * acc >= total:
            return value
    return ordered[-1][0]  # pragma: no cover - the loop always returns


def _lower_median(values: Sequence[int]) -> int:
    return sorted(values)[(len(values) - 1) // 2]


def move_band(previous: int, epochs: int, bps: int) -> tuple[int, int]:
    """Where a price may be ``epochs`` epochs after ``previous``: each epoch moves it by at
    most ``max(price × bps / 10⁴, 1)`` base units either way (compounded).

    >>> move_band(1000, 1, 500), move_band(1000, 2, 500), move_band(3, 1, 500)
    ((950, 1050), (903, 1102), (2, 4))
    """
    lo = hi = previous
    for _ in range(max(epochs, 1)):
        hi += max(hi * bps // FULL_WEIGHT, 1)
        lo = max(lo - max(lo * bps // FULL_WEIGHT, 1), 0)
    return lo, hi


def _fresh(observations: Iterable[Observation], now: int, params: OracleParams,
           excluded: set[str]) -> tuple[dict[tuple[str, SourceKind], list[Observation]], int]:
    by_key: dict[tuple[str, SourceKind], list[Observation]] = defaultdict(list)
    stale = 0
    for o in observations:
        if o.operator in excluded:
            continue
        if o.at > now or now - o.at > params.max_age(o.kind) or o.value <= 0:
            stale += 1
            continue
        by_key[(o.source, o.kind)].append(o)
    return by_key, stale


def _collapse(by_key: Mapping[tuple[str, SourceKind], list[Observation]],
              standings: Mapping[str, Standing], params: OracleParams
              ) -> tuple[list[OperatorValue], int]:
    """One value per key and kind, then one per operator (weighted by kind)."""
    per_operator: dict[str, list[tuple[int, SourceKind]]] = defaultdict(list)
    duplicates = 0
    for (_source, kind), group in sorted(by_key.items()):
        duplicates += len(group) - 1
        if kind == "settled":
            value = _lower_median([o.value for o in group])
        else:  # the latest ask or report replaces the earlier ones
            value = max(group, key=lambda o: (o.at, o.epoch or 0, o.hash, o.value)).value
        per_operator[group[0].operator].append((value, kind))
    out = []
    for operator, values in sorted(per_operator.items()):
        value = weighted_median([(v, params.kind_weight(k)) for v, k in values])
        kinds = tuple(sorted({k for _, k in values}))
        standing = standings.get(operator)
        base = standing.weight_bps if standing is not None else params.initial_weight_bps
        weight = max(base * max(params.kind_weight(k) for k in kinds) // FULL_WEIGHT, 1)
        out.append(OperatorValue(operator, value, weight, kinds))
    return out, duplicates


def aggregate(market: str, observations: Iterable[Observation], *, epoch: int, now: int,
              previous: PricePoint | None = None,
              standings: Mapping[str, Standing] | None = None,
              reports: Iterable[Report] = (),
              params: OracleParams = DEFAULT_ORACLE) -> OraclePrice:
    """The oracle's price for ``market`` in ``epoch``, from the observations fresh at ``now``
    (see the module docstring for the rule and why a minority cannot move it).

    ``reports`` are the signed reports among the observations (or any others of the
    market): their equivocations exclude the operator and come back as findings.
    """
    findings = find_equivocations(reports)
    excluded = {f.operator for f in findings}
    by_key, stale = _fresh(observations, now, params, excluded)
    operators, duplicates = _collapse(by_key, standings or {}, params)
    n = len(operators)
    base = OraclePrice(market, epoch, None, "", n, params.min_sources, previous=previous,
                       equivocations=findings, stale=stale, duplicates=duplicates)
    if n < params.min_sources:
        return replace(base, operators=tuple(operators), reason=(
            f"{n} fresh independent source{'s' if n != 1 else ''}, {params.min_sources} "
            "needed"))
    values = sorted(o.value for o in operators)
    lo_med, hi_med = values[(n - 1) // 2], values[n // 2]
    median = (lo_med + hi_med) // 2
    deviations = sorted(abs(v - median) for v in values)
    mad = (deviations[(n - 1) // 2] + deviations[n // 2]) // 2
    tolerance = max(mad * params.mad_multiple_bps // FULL_WEIGHT,
                    median * params.mad_floor_bps // FULL_WEIGHT)
    judged = [replace(o, outlier=abs(o.value - median) > tolerance) for o in operators]
    inliers = [(o.value, o.weight) for o in judged if not o.outlier]
    weighted = weighted_median(inliers) if inliers else median
    price = min(max(weighted, lo_med), hi_med)
    candidate = price
    if previous is not None and 0 < epoch - previous.epoch <= params.max_gap_epochs:
        lo, hi = move_band(previous.price, epoch - previous.epoch, params.max_move_bps)
        price = min(max(price, lo), hi)
    return replace(base, price=price, median=median, band=(lo_med, hi_med),
                   weighted=weighted, bounded=price != candidate, operators=tuple(judged),
                   reason=f"median of {n} independent sources"
                   + (", held by the move bound" if price != candidate else ""))


def update_standings(result: OraclePrice, standings: Mapping[str, Standing],
                     params: OracleParams = DEFAULT_ORACLE) -> dict[str, Standing]:
    """The standings after a closed epoch (only those that change; each once per epoch).

    An outlier loses ``penalty_bps`` of its weight (geometrically, down to the minimum), an
    inlier regains ``recovery_bps`` (up to full weight), an equivocator drops to the
    minimum. An epoch without a price changes nothing but the equivocators.

    >>> r = aggregate("m", [Observation(f"k{i}", f"o{i}", "report", v, 0)
    ...                     for i, v in enumerate([10, 10, 10, 99])], epoch=1, now=0)
    >>> s = update_standings(r, {})
    >>> s["o3"].weight_bps, s["o0"].weight_bps
    (2500, 5500)
    """
    out: dict[str, Standing] = {}

    def current(operator: str) -> Standing:
        return out.get(operator) or standings.get(operator) or Standing(
            operator, params.initial_weight_bps)

    if result.price is not None:
        for o in result.operators:
            s = current(o.operator)
            if s.epoch >= result.epoch:
                continue
            if o.outlier:
                weight = max(s.weight_bps * (FULL_WEIGHT - params.penalty_bps) // FULL_WEIGHT,
                             params.min_weight_bps)
                out[o.operator] = Standing(o.operator, weight, s.deviations + 1, result.epoch)
            else:
                weight = min(s.weight_bps + params.recovery_bps, FULL_WEIGHT)
                out[o.operator] = Standing(o.operator, weight, s.deviations, result.epoch)
    for f in result.equivocations:
        s = current(f.operator)
        if s.epoch < result.epoch or s.weight_bps > params.min_weight_bps:
            out[f.operator] = Standing(f.operator, params.min_weight_bps, s.deviations + 1,
                                       result.epoch)
    return out


# ------------------------------------------------------------------------------ quotes and USD


def usd_to_base_units(usd_micros_per_second: int, nos_usd_micros: int) -> int:
    """A USD price (µUSD per second) in NOS base units per second at ``nos_usd_micros``
    (µUSD per NOS), rounded up so the node is never paid less than the USD price; capped
    at the supply.

    >>> usd_to_base_units(100, 500_000)      # $0.0001/s at $0.50 per NOS
    200
    >>> usd_to_base_units(1, 3_000_000)      # rounds up
    1
    """
    if nos_usd_micros <= 0 or usd_micros_per_second < 0:
        raise InvalidInput("a NOS/USD rate must be > 0 and a USD price >= 0")
    return min(-(-usd_micros_per_second * BASE_UNITS_PER_NOS // nos_usd_micros), TOTAL_SUPPLY)


def base_units_to_usd_micros(base_units: int, nos_usd_micros: int) -> int:
    """Base units in µUSD at ``nos_usd_micros`` (rounded down; for display).

    >>> base_units_to_usd_micros(200, 500_000)
    100
    """
    return base_units * nos_usd_micros // BASE_UNITS_PER_NOS


@dataclass(frozen=True, slots=True)
class MarketQuote:
    """A market's price now: the reference (oracle, or the configured fallback, and why)
    and what a job posted now is charged per second (and at which NOS/USD rate)."""

    market: str
    reference: int
    source: PriceSource
    reason: str
    charged: int
    charged_reason: str
    #: µUSD per NOS the charge was converted at (a market quoted in USD); None: in NOS
    nos_usd_rate: int | None = None
    #: the oracle epoch the reference price is from
    epoch: int | None = None

    def suggested_max_price(self, timeout: int) -> int:
        """A ``max_price`` for a job of ``timeout`` seconds at the reference price."""
        return min(self.reference * timeout, TOTAL_SUPPLY)


def quote(market: MarketParams, oracle: OraclePrice | None,
          nos_usd: OraclePrice | None) -> MarketQuote:
    """The reference and charged prices of ``market`` given the oracle's answers (None:
    none yet). The charge is the configured NOS price, or, for a market quoted in USD
    (``price_usd_micros_per_second``), that price at the oracle's NOS/USD rate; without a
    rate it falls back to the configured NOS price, and says so.

    >>> m = MarketParams(name="gpu", price_per_second=300, price_usd_micros_per_second=100)
    >>> q = quote(m, None, None)
    >>> q.source, q.reference, q.charged, q.nos_usd_rate
    ('configured', 300, 300, None)
    """
    rate = nos_usd.price if nos_usd is not None else None
    usd = market.price_usd_micros_per_second
    if usd is None:
        charged, why, used = market.price_per_second, "the market's NOS price", None
    elif rate is not None:
        charged, used = usd_to_base_units(usd, rate), rate
        why = f"the market's USD price at the oracle's NOS/USD rate ({rate} µUSD per NOS)"
    else:
        charged, used = market.price_per_second, None
        why = ("the market's configured NOS price: no NOS/USD rate"
               + (f" ({nos_usd.reason})" if nos_usd is not None else " yet"))
    if oracle is not None and oracle.price is not None:
        return MarketQuote(market.name, oracle.price, "oracle", oracle.reason, charged, why,
                           used, oracle.epoch)
    reason = (f"too few sources: {oracle.reason}; " if oracle is not None
              else "no oracle price yet; ") + f"showing {why}"
    return MarketQuote(market.name, charged, "configured", reason, charged, why, used,
                       None if oracle is None else oracle.epoch)


def signature_valid(source: str, signature: str, message: bytes) -> bool:
    """Whether ``signature`` (base58) is ``source``'s ed25519 signature of ``message``:
    anyone holding two reports checks an equivocation with this alone."""
    try:
        return Signature.from_string(signature).verify(Pubkey.from_string(source), message)
    except ValueError:
        return False
