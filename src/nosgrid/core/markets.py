"""Markets: the price and hardware a kind of work needs, and matching jobs to nodes.

A market groups nodes with comparable hardware and fixes the terms every job in it runs
under (:class:`MarketParams`). The coordinator decides which markets a node may join from
the node's measured hardware report (:func:`eligibility`), and hands each queued job to
an idle eligible node through a :class:`Matcher` (FIFO here; reputation-weighted later).

>>> m = MarketParams(name="cpu", price_per_second=10, max_timeout=3600, fee_bps=500)
>>> eligibility(m, HardwareReport(cpu_cores=2, memory_mb=4096)).ok
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nosgrid.core.errors import InvalidMarketParams
from nosgrid.core.money import TOTAL_SUPPLY

MARKET_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_TIMEOUT_LIMIT: Final = 7 * 24 * 3600
#: the price oracle's NOS/USD rate is kept like a market's price; no market has this name
NOS_USD: Final = "nos_usd"
#: the highest USD price per second a market may fix (µUSD: $1,000,000 per second)
MAX_USD_MICROS_PER_SECOND: Final = 10**12


class MarketParams(BaseModel):
    """Terms of one market. Prices are NOS base units; ``fee_bps`` goes to the treasury."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    price_per_second: int = Field(ge=0, le=TOTAL_SUPPLY)
    max_timeout: int = Field(default=3600, ge=1, le=MAX_TIMEOUT_LIMIT)
    fee_bps: int = Field(default=500, ge=0, le=10_000)
    #: share of the fee (bps of the fee) that goes to stakers instead of the treasury
    stakers_share_bps: int = Field(default=0, ge=0, le=10_000)
    #: audit fee in bps of the job price (used by verification)
    audit_fee_bps: int = Field(default=0, ge=0, le=10_000)
    min_stake: int = Field(default=0, ge=0, le=TOTAL_SUPPLY)
    #: charged per posted job, to the treasury, never refunded (spam costs the spammer)
    posting_fee: int = Field(default=0, ge=0, le=TOTAL_SUPPLY)
    gpu_models: tuple[str, ...] = ()
    min_vram_mb: int = Field(default=0, ge=0)
    min_gpus: int = Field(default=0, ge=0, le=64)
    min_cpu_cores: int = Field(default=1, ge=0, le=4096)
    min_memory_mb: int = Field(default=0, ge=0)
    #: a market quoted in USD: its price per second in µUSD, converted into NOS at the price
    #: oracle's NOS/USD rate when a job is posted (``price_per_second`` is the fallback
    #: while the oracle has no rate); None: the market is priced in NOS
    price_usd_micros_per_second: int | None = Field(default=None, ge=1,
                                                    le=MAX_USD_MICROS_PER_SECOND)
    #: jobs may ask for egress (``meta.nosgrid.network: egress``): out only through the
    #: node's filtering proxy; False: every job of the market has no network at all
    egress: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not MARKET_NAME_RE.match(v):
            raise ValueError("lower-case letters, digits, '.', '_' or '-', at most 63 characters")
        if v == NOS_USD:
            raise ValueError(f"{NOS_USD!r} is the price oracle's NOS/USD rate; choose another name")
        return v

    def network_problem(self, network: str) -> str | None:
        """Why a job asking for ``network`` cannot be posted here (None: it can).

        >>> MarketParams(name="cpu", price_per_second=1).network_problem("egress")
        "market 'cpu' does not allow egress; post to a market created with egress, or drop meta.nosgrid.network"
        """  # noqa: E501
        if network == "egress" and not self.egress:
            return (f"market {self.name!r} does not allow egress; post to a market created "
                    "with egress, or drop meta.nosgrid.network")
        return None

    def at_price(self, price_per_second: int) -> MarketParams:
        """The same terms at another price per second (a USD price converted into NOS)."""
        return self.model_copy(update={"price_per_second": price_per_second})

    def deposit_for(self, timeout: int, max_price: int | None) -> int:
        """What a job with ``timeout`` seconds escrows: price × timeout, capped by max_price."""
        full = self.price_per_second * timeout
        return full if max_price is None else min(full, max_price)


#: what an operator key signs to vouch for a node key (the node signs its registration)
NODE_OPERATOR_PREFIX: Final = "nosgrid-node-operator-v1:"


def node_operator_message(node: str) -> bytes:
    """The bytes an operator signs to take ``node`` as one of its nodes."""
    return (NODE_OPERATOR_PREFIX + node).encode()


def parse_market_params(data: object) -> MarketParams:
    """Validate untrusted market parameters, raising :class:`InvalidMarketParams`."""
    from pydantic import ValidationError

    try:
        return MarketParams.model_validate(data)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise InvalidMarketParams("invalid market: " + "; ".join(msgs), errors=msgs) from None


class GpuInfo(BaseModel):
    """One GPU as the node's probe reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(max_length=200)
    vram_mb: int = Field(ge=0)
    uuid: str = Field(default="", max_length=200)


class HardwareReport(BaseModel):
    """What a node measured about itself (signed by the node when it registers)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cpu_model: str = Field(default="", max_length=200)
    cpu_cores: int = Field(default=1, ge=0, le=4096)
    memory_mb: int = Field(default=0, ge=0)
    disk_free_mb: int = Field(default=0, ge=0)
    gpus: tuple[GpuInfo, ...] = Field(default=(), max_length=64)
    podman_version: str = Field(default="", max_length=100)
    cpu_score: float = Field(default=0.0, ge=0)


@dataclass(frozen=True, slots=True)
class Eligibility:
    ok: bool
    reasons: tuple[str, ...] = ()


def eligibility(market: MarketParams, hw: HardwareReport, stake: int = 0) -> Eligibility:
    """May a node with ``hw`` and ``stake`` take this market's jobs? Says why not."""
    reasons: list[str] = []
    if hw.cpu_cores < market.min_cpu_cores:
        reasons.append(f"needs {market.min_cpu_cores} CPU cores, node has {hw.cpu_cores}")
    if hw.memory_mb < market.min_memory_mb:
        reasons.append(f"needs {market.min_memory_mb} MB memory, node has {hw.memory_mb}")
    gpus = [
        g
        for g in hw.gpus
        if g.vram_mb >= market.min_vram_mb
        and (not market.gpu_models or any(m.lower() in g.model.lower() for m in market.gpu_models))
    ]
    needed_gpus = max(market.min_gpus, 1 if (market.gpu_models or market.min_vram_mb) else 0)
    if len(gpus) < needed_gpus:
        wanted = ", ".join(market.gpu_models) or "any GPU"
        reasons.append(
            f"needs {needed_gpus} GPU(s) of {wanted} with ≥{market.min_vram_mb} MB VRAM, "
            f"node has {len(gpus)}"
        )
    if stake < market.min_stake:
        reasons.append(f"needs a stake of at least {market.min_stake} base units, has {stake}")
    return Eligibility(not reasons, tuple(reasons))


@dataclass(frozen=True, slots=True)
class ServedMarkets:
    """The markets a node serves, and why not each other one it pinned (or, pinning
    nothing, each other market)."""

    markets: tuple[str, ...]
    rejected: Mapping[str, tuple[str, ...]]


def choose_markets(markets: Sequence[MarketParams], hw: HardwareReport, stake: int,
                   pinned: Sequence[str] | None = None) -> ServedMarkets:
    """The markets a node with ``hw`` and ``stake`` serves: every one it qualifies for, or,
    when its operator pinned some (``pinned``), those of them it qualifies for.

    Rerun whenever one of the inputs may have changed (a market created, the stake moved):
    a node joins and leaves markets without restarting.

    >>> cpu = MarketParams(name="cpu", price_per_second=1)
    >>> big = MarketParams(name="big", price_per_second=1, min_memory_mb=1 << 20)
    >>> hw = HardwareReport(cpu_cores=2, memory_mb=4096)
    >>> choose_markets([big, cpu], hw, 0).markets
    ('cpu',)
    >>> dict(choose_markets([big, cpu], hw, 0, pinned=["gpu"]).rejected)
    {'gpu': ('no such market',)}
    """
    by_name = {m.name: m for m in markets}
    wanted = list(dict.fromkeys(pinned)) if pinned else sorted(by_name)
    accepted: list[str] = []
    rejected: dict[str, tuple[str, ...]] = {}
    for name in wanted:
        market = by_name.get(name)
        verdict = eligibility(market, hw, stake) if market is not None else \
            Eligibility(False, ("no such market",))
        if verdict.ok:
            accepted.append(name)
        else:
            rejected[name] = verdict.reasons
    return ServedMarkets(tuple(accepted), rejected)


@dataclass(frozen=True, slots=True)
class NodeCandidate:
    """An idle node waiting for work in a market, as the matcher sees it."""

    node_id: str
    waiting_since: float
    stake: int = 0
    reputation: float = 0.5
    jobs_done: int = 0


class Matcher(Protocol):
    """Chooses which idle node gets a queued job. ``seed`` makes random choices reproducible."""

    def pick(self, candidates: Sequence[NodeCandidate], seed: int) -> NodeCandidate | None: ...


class FifoMatcher:
    """The node that has waited longest gets the next job (ties: lowest node id)."""

    def pick(self, candidates: Sequence[NodeCandidate], seed: int) -> NodeCandidate | None:
        if not candidates:
            return None
        return min(candidates, key=lambda c: (c.waiting_since, c.node_id))
