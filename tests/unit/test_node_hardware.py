"""Hardware probe and benchmark: sane values, and no GPU is a normal answer."""

from __future__ import annotations

from pathlib import Path

from nosgrid.node.benchmark import gpu_tflops_estimate, run_benchmark
from nosgrid.node.hardware import GpuDetails, probe_hardware, probe_nvidia


def test_probe_returns_sane_values(tmp_path: Path) -> None:
    probe = probe_hardware(tmp_path / "not-yet-created", cpu_score=12.5)
    r = probe.report
    assert r.cpu_cores >= 1 and r.memory_mb > 100 and r.disk_free_mb > 0
    assert r.cpu_model and r.cpu_score == 12.5
    assert probe.as_dict()["report"]["cpu_cores"] == r.cpu_cores


def test_no_gpu_is_not_an_error() -> None:
    nv = probe_nvidia()
    assert nv.gpus or nv.error  # either GPUs, or a reason why none


def test_benchmark_is_short_and_positive() -> None:
    result = run_benchmark(0.2)
    assert result.cpu_score > 0 and result.sha256_mb_s > 0
    assert result.seconds < 5
    assert set(result.as_dict()) >= {"cpu_score", "sha256_mb_s", "matmul_gflops"}


def test_gpu_estimate_needs_a_clock() -> None:
    assert gpu_tflops_estimate(GpuDetails(0, "X", 80_000, "u")) == 0.0
    assert gpu_tflops_estimate(GpuDetails(0, "H100", 81_000, "u", 1980)) > 50
