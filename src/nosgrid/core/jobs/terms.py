"""A job's terms: what it was posted under, parsed once from the validated definition and
the post request, stored with the job and passed down (no JSON digging afterwards).

The request wins over the definition's ``meta.nosgrid`` (market, timeout, max price);
verification, replicas and input blobs come from the definition only.

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
from dataclasses import dataclass
from typing import Any, Final, cast

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

    @property
    def verified(self) -> bool:
        """The outputs are compared (``deterministic`` or ``tolerance``)."""
        return self.verification != "none"


def nosgrid_meta(defn: JobDefinition) -> NosgridMeta:
    """The definition's ``meta.nosgrid`` (defaults when absent)."""
    if defn.meta is not None and defn.meta.nosgrid is not None:
        return defn.meta.nosgrid
    return NosgridMeta()


def requested_market(defn: JobDefinition, market: str | None) -> str:
    """The market a post names: the request's, else the definition's; one is required."""
    name = market or nosgrid_meta(defn).market
    if not name:
        raise InvalidInput("name a market (--market, or meta.nosgrid.market in the definition)",
                           field="market")
    return name


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
            inputs=tuple(str(x) for x in raw.get("inputs", ())))
        if len(_parsed) >= _CACHE_SIZE:
            _parsed.clear()
        _parsed[text] = terms
    return terms
