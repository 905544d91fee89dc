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
