"""A job's terms: what it was posted under, parsed once from the validated definition and
the post request, stored with the job and passed down (no JSON digging afterwards).

The request wins over the definition's ``meta.nosgrid`` (market, timeout, max price);
verification, replicas and input blobs come from the definition only. A post that names
no market goes to the coordinator's default market, else to the only market there is
(``requested_market``).

>>> from nosgrid.core.jobs.load import parse_job_definition
>>> defn = parse_job_definition({"version": "0.1", "type": "container",
...     "meta": {"nosgrid": {"verification": "tolerance", "rel_eps": 0.1, "timeout": 60}},
...     "ops": [{"type": "container/run", "id": "main", "args": {"image": "busybox"}}]})
>>> t = terms_of(defn, market="cpu", max_timeout=600)
>>> t.timeout, t.verification, t.tolerance.rel_eps, t.replicas
(60, 'tolerance', 0.1, 1)
>>> from_json(to_json(t)) == t
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from nosgrid.core.errors import InvalidInput
from nosgrid.core.jobs.meta import NosgridMeta
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.verification.comparison import Tolerance
from nosgrid.core.verification.sampling import Mode

#: the timeout of a job whose request and definition name none (capped by the market's)
DEFAULT_TIMEOUT_S: Final = 600
_CACHE_SIZE: Final = 4096
_DEFAULT_TOLERANCE: Final = Tolerance()


@dataclass(frozen=True, slots=True)
class JobTerms:
    """Market, timeout (s), max price (base units), verification, replicas, input blobs."""

    market: str
    timeout: int
    max_price: int | None = None
    verification: Mode = "none"
    tolerance: Tolerance = _DEFAULT_TOLERANCE
    replicas: int = 1
    #: sha256 of every input blob the definition places in the job
    inputs: tuple[str, ...] = ()
    #: a market quoted in USD: the price oracle's NOS/USD rate (µUSD per NOS) its price was
    #: converted at when the job was posted; None: the job is priced in NOS
    nos_usd_rate: int | None = None
    #: the market's posting fee charged when it was posted (to the treasury, kept even if
    #: the job is cancelled or never runs)
    posting_fee: int = 0
    #: seconds it was put ahead in the queue (core.jobs.queueing)
    head_start: int = 0

    @property
    def verified(self) -> bool:
        """The outputs are compared (``deterministic`` or ``tolerance``)."""
        return self.verification != "none"


def nosgrid_meta(defn: JobDefinition) -> NosgridMeta:
    """The definition's ``meta.nosgrid`` (defaults when absent)."""
    if defn.meta is not None and defn.meta.nosgrid is not None:
        return defn.meta.nosgrid
    return NosgridMeta()


#: how the market of a post was chosen, and the words the API and the CLI say it with
MarketChosenBy = Literal["request", "definition", "default", "only"]
MARKET_CHOSEN_BY: Final[dict[str, str]] = {
    "request": "named by the request",
    "definition": "named by the definition",
    "default": "the coordinator's default",
    "only": "the only market",
}


@dataclass(frozen=True, slots=True)
class MarketChoice:
    """The market a post goes to and why (``chosen_by``, see ``MARKET_CHOSEN_BY``)."""

    name: str
    chosen_by: MarketChosenBy

    @property
    def why(self) -> str:
        return MARKET_CHOSEN_BY[self.chosen_by]


def requested_market(defn: JobDefinition, market: str | None, *, default: str | None = None,
                     markets: Sequence[str] = ()) -> MarketChoice:
    """The market a post goes to: the request's, else the definition's
    ``meta.nosgrid.market``, else the coordinator's ``default``, else the only one of
    ``markets`` (the names of the markets that exist). Several and none chosen: an error
    that lists them.

    >>> from nosgrid.core.jobs.load import parse_job_definition
    >>> defn = parse_job_definition({"version": "0.1", "type": "container", "ops": []})
    >>> requested_market(defn, None, markets=["cpu"])
    MarketChoice(name='cpu', chosen_by='only')
    >>> requested_market(defn, None, default="gpu", markets=["cpu", "gpu"]).why
    "the coordinator's default"
    >>> requested_market(defn, None, markets=["gpu", "cpu"])
    Traceback (most recent call last):
    ...
    nosgrid.core.errors.InvalidInput: name a market: this coordinator has 2 (cpu, gpu) and no default one; pass --market NAME (the request's `market`) or set meta.nosgrid.market in the definition
    """  # noqa: E501
    if market:
        return MarketChoice(market, "request")
    if named := nosgrid_meta(defn).market:
        return MarketChoice(named, "definition")
    if default:
        return MarketChoice(default, "default")
    if len(markets) == 1:
        return MarketChoice(markets[0], "only")
    if not markets:
        raise InvalidInput("there is no market to post in yet; an admin creates one "
                           "(`nosgrid market create`)", field="market")
    names = sorted(markets)
    raise InvalidInput(f"name a market: this coordinator has {len(names)} "
                       f"({', '.join(names)}) and no default one; pass --market NAME (the "
                       "request's `market`) or set meta.nosgrid.market in the definition",
                       field="market", markets=names)


def terms_of(defn: JobDefinition, *, market: str, max_timeout: int, timeout: int | None = None,
             max_price: int | None = None) -> JobTerms:
    """The terms of posting ``defn`` in ``market`` (whose longest timeout is
    ``max_timeout``), with the request's ``timeout`` and ``max_price`` if it gave them."""
    meta = nosgrid_meta(defn)
    mode: Mode = meta.verification
    return JobTerms(
        market=market,
        timeout=timeout or meta.timeout or min(DEFAULT_TIMEOUT_S, max_timeout),
        max_price=max_price if max_price is not None else meta.max_price_base_units,
        verification=mode,
        tolerance=Tolerance.of(meta.abs_eps, meta.rel_eps),
        replicas=meta.replicas if mode != "none" else 1,
        inputs=tuple(blob.sha256 for blob in meta.inputs),
    )


def to_json(terms: JobTerms) -> str:
    """The stored form (one JSON object, keys sorted)."""
    body: dict[str, Any] = {
        "market": terms.market, "timeout": terms.timeout, "max_price": terms.max_price,
        "verification": terms.verification, "abs_eps": terms.tolerance.abs_eps,
        "rel_eps": terms.tolerance.rel_eps, "replicas": terms.replicas,
        "inputs": list(terms.inputs)}
    if terms.nos_usd_rate is not None:
        body["nos_usd_rate"] = terms.nos_usd_rate
    if terms.posting_fee:
        body["posting_fee"] = terms.posting_fee
    if terms.head_start:
        body["head_start"] = terms.head_start
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


_parsed: dict[str, JobTerms] = {}


def from_json(text: str) -> JobTerms:
    """Read the stored form back (parsed once per distinct text per process)."""
    terms = _parsed.get(text)
    if terms is None:
        raw = json.loads(text)
        terms = JobTerms(
            market=str(raw["market"]), timeout=int(raw["timeout"]),
            max_price=None if raw.get("max_price") is None else int(raw["max_price"]),
            verification=cast(Mode, raw.get("verification", "none")),
            tolerance=Tolerance(float(raw.get("abs_eps", _DEFAULT_TOLERANCE.abs_eps)),
                                float(raw.get("rel_eps", _DEFAULT_TOLERANCE.rel_eps))),
            replicas=int(raw.get("replicas", 1)),
            inputs=tuple(str(x) for x in raw.get("inputs", ())),
            nos_usd_rate=None if raw.get("nos_usd_rate") is None else int(raw["nos_usd_rate"]),
            posting_fee=int(raw.get("posting_fee", 0)), head_start=int(raw.get("head_start", 0)))
        if len(_parsed) >= _CACHE_SIZE:
            _parsed.clear()
        _parsed[text] = terms
    return terms
