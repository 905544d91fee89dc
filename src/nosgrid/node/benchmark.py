"""A short benchmark of what this node can do: CPU (sha256 + matmul), GPU from NVML clocks."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from nosgrid.node.hardware import GpuDetails, probe_nvidia

_HASH_CHUNK = b"\x5a" * (1 << 20)


@dataclass(frozen=True)
class BenchmarkResult:
    """Benchmark figures; ``cpu_score`` (GFLOP/s of a float64 matmul) goes in the report.

    Example::

        result = run_benchmark(budget_s=0.5)
        print(result.cpu_score, result.sha256_mb_s)
    """

    sha256_mb_s: float
    matmul_gflops: float
    gpu_tflops_estimate: tuple[float, ...]
    seconds: float

    @property
    def cpu_score(self) -> float:
        """The figure sent to the coordinator: matmul GFLOP/s, rounded to 0.1."""
        return round(max(self.matmul_gflops, 0.0), 1)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "cpu_score": self.cpu_score,
            "sha256_mb_s": round(self.sha256_mb_s, 1),
            "matmul_gflops": round(self.matmul_gflops, 1),
            "gpu_tflops_estimate": [round(x, 1) for x in self.gpu_tflops_estimate],
            "seconds": round(self.seconds, 2),
        }


def sha256_throughput(budget_s: float) -> float:
    """MB/s of sha256 over 1 MiB chunks for about ``budget_s`` seconds (one core)."""
    h = hashlib.sha256()
    done = 0
    start = time.perf_counter()
    while True:
        h.update(_HASH_CHUNK)
        done += len(_HASH_CHUNK)
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return done / elapsed / 1e6


def matmul_gflops(budget_s: float, n: int = 256) -> float:
    """GFLOP/s of a float64 ``n×n`` matmul (numpy's BLAS), best of the rounds in ``budget_s``."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n))
    b = rng.random((n, n))
    flops = 2.0 * n**3
    best = 0.0
    end = time.perf_counter() + budget_s
    while True:
        t0 = time.perf_counter()
        np.dot(a, b)
        dt = time.perf_counter() - t0
        if dt > 0:
            best = max(best, flops / dt / 1e9)
        if time.perf_counter() >= end:
            return best


def gpu_tflops_estimate(gpu: GpuDetails) -> float:
    """A rough FP32 peak from NVML's max SM clock (no kernel is run): 0 when unknown.

    The SM count is not in NVML, so this scales the clock by the VRAM class; treat it as
    an ordering hint between nodes, not a measurement.
    """
    if not gpu.max_sm_clock_mhz:
        return 0.0
    lanes = 16_896 if gpu.vram_mb >= 70_000 else 8_192 if gpu.vram_mb >= 20_000 else 3_584
    return 2.0 * lanes * gpu.max_sm_clock_mhz * 1e6 / 1e12


def run_benchmark(budget_s: float = 1.0) -> BenchmarkResult:
    """Run the whole benchmark in about ``budget_s`` seconds (half sha256, half matmul).

    Example::

        score = run_benchmark().cpu_score   # e.g. 25.3 (GFLOP/s)
    """
    start = time.perf_counter()
    sha = sha256_throughput(budget_s / 2)
    gflops = matmul_gflops(budget_s / 2)
    gpus = tuple(gpu_tflops_estimate(g) for g in probe_nvidia().gpus)
    return BenchmarkResult(sha, gflops, gpus, time.perf_counter() - start)
