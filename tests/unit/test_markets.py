"""Market terms, hardware eligibility and FIFO matching."""

from __future__ import annotations

import pytest

from nosgrid.core.errors import InvalidMarketParams
from nosgrid.core.markets import (
    FifoMatcher,
    GpuInfo,
    HardwareReport,
    MarketParams,
    NodeCandidate,
    choose_markets,
    eligibility,
    parse_market_params,
)

H100 = GpuInfo(model="NVIDIA H100 80GB HBM3", vram_mb=81_559)


def test_gpu_market_needs_matching_gpu_and_stake() -> None:
    market = MarketParams(name="h100", price_per_second=50, gpu_models=("H100",),
                          min_vram_mb=40_000, min_stake=1_000)
    assert eligibility(market, HardwareReport(gpus=(H100,)), stake=1_000).ok
    no_gpu = eligibility(market, HardwareReport(), stake=1_000)
    assert not no_gpu.ok and "GPU" in no_gpu.reasons[0]
    assert not eligibility(market, HardwareReport(gpus=(H100,)), stake=10).ok
    small = GpuInfo(model="NVIDIA H100 PCIe", vram_mb=20_000)
    assert not eligibility(market, HardwareReport(gpus=(small,)), stake=1_000).ok


def test_cpu_market() -> None:
    market = MarketParams(name="cpu", price_per_second=1, min_cpu_cores=4, min_memory_mb=8_000)
    assert not eligibility(market, HardwareReport(cpu_cores=2, memory_mb=16_000)).ok
    assert eligibility(market, HardwareReport(cpu_cores=4, memory_mb=16_000)).ok


@pytest.mark.parametrize("bad", [
    {"name": "Bad Name", "price_per_second": 1},
    {"name": "ok", "price_per_second": -1},
    {"name": "ok", "price_per_second": 1, "fee_bps": 10_001},
    {"name": "ok", "price_per_second": 1, "surprise": True},
    {"name": "ok", "price_per_second": 1, "max_timeout": 0},
])
def test_bad_market_params(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidMarketParams):
        parse_market_params(bad)


def test_fifo_picks_longest_waiting() -> None:
    c = [NodeCandidate("b", 5.0), NodeCandidate("a", 3.0), NodeCandidate("c", 3.0)]
    picked = FifoMatcher().pick(c, seed=0)
    assert picked is not None and picked.node_id == "a"
    assert FifoMatcher().pick([], seed=0) is None


CPU = MarketParams(name="cpu", price_per_second=1)
STAKED = MarketParams(name="staked", price_per_second=1, min_stake=50)
BIG = MarketParams(name="big", price_per_second=1, min_memory_mb=1 << 20)
SMALL_BOX = HardwareReport(cpu_cores=2, memory_mb=4096)


@pytest.mark.parametrize(("pinned", "stake", "served", "rejected"), [
    (None, 0, ("cpu",), {"big", "staked"}),           # any: every one it qualifies for
    (None, 50, ("cpu", "staked"), {"big"}),           # the stake now meets the minimum
    ([], 0, ("cpu",), {"big", "staked"}),             # an empty pin list is "any" too
    (["staked", "cpu"], 0, ("cpu",), {"staked"}),     # pinned: only those, and why not
    (["staked", "cpu", "staked"], 50, ("staked", "cpu"), set()),  # in the pins' order, once
    (["gpu"], 50, (), {"gpu"}),                       # a pin may name a market yet to come
])
def test_a_node_serves_the_markets_it_qualifies_for_among_its_pins(
    pinned: list[str] | None, stake: int, served: tuple[str, ...], rejected: set[str],
) -> None:
    choice = choose_markets([STAKED, BIG, CPU], SMALL_BOX, stake, pinned)
    assert choice.markets == served
    assert set(choice.rejected) == rejected
    assert all(choice.rejected.values())  # each refusal says why
