"""Probe what this machine has: CPU, memory, disk, Podman/runc and NVIDIA GPUs (via NVML)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nosgrid.core.markets import GpuInfo, HardwareReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuDetails:
    """One NVIDIA GPU as NVML reports it (more than ``GpuInfo`` keeps for the coordinator)."""

    index: int
    model: str
    vram_mb: int
    uuid: str
    max_sm_clock_mhz: int = 0
    max_mem_clock_mhz: int = 0


@dataclass(frozen=True)
class HardwareProbe:
    """The full probe: the signed ``report`` plus details shown by ``nosgrid node info``.

    Example::

        probe = probe_hardware(Path("/var/lib/nosgrid"))
        print(probe.report.cpu_cores, probe.gpu_error or "GPUs ok")
    """

    report: HardwareReport
    arch: str
    kernel: str
    runtime_version: str
    driver_version: str = ""
    cuda_version: str = ""
    gpus: tuple[GpuDetails, ...] = ()
    gpu_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``--json``)."""
        return {
            "report": self.report.model_dump(mode="json"),
            "arch": self.arch,
            "kernel": self.kernel,
            "runtime_version": self.runtime_version,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "gpus": [g.__dict__ for g in self.gpus],
            "gpu_error": self.gpu_error,
        }


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()[:200]
    except OSError:
        pass
    return (platform.processor() or platform.machine())[:200]


def cpu_cores() -> int:
    """CPUs this process may use (affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def memory_mb() -> int:
    """Total memory in MiB from ``/proc/meminfo`` (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def disk_free_mb(path: Path) -> int:
    """Free MiB on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free // (1024 * 1024)
    except OSError:
        return 0


def _version_of(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, check=False).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"(\d+\.\d+(?:\.\d+)?[\w.+~-]*)", out)
    return match.group(1)[:100] if match else ""


def podman_version() -> str:
    """``podman --version`` as a bare version (``"4.3.1"``), empty when podman is missing."""
    return _version_of(["podman", "--version"])


def runtime_version(runtime: str = "runc") -> str:
    """The OCI runtime's version (``runc --version``), empty when missing."""
    return _version_of([runtime, "--version"])


@dataclass(frozen=True)
class NvidiaProbe:
    """What NVML said; ``error`` is set (and ``gpus`` empty) when there is no driver/GPU."""

    gpus: tuple[GpuDetails, ...] = ()
    driver_version: str = ""
    cuda_version: str = ""
    error: str = ""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvidia() -> NvidiaProbe:
    """NVIDIA GPUs through NVML. No library, no driver or no GPU is a normal answer.

    Example::

        nv = probe_nvidia()
        print([g.model for g in nv.gpus] or nv.error)
    """
    try:
        import pynvml
    except ImportError:  # the optional [gpu] extra: without it this node offers no GPU
        error = "nvidia-ml-py is not installed (pip install 'nosgrid[gpu]')"
        log.info("no NVIDIA GPU found: nvidia-ml-py is not installed", extra={"err": error})
        return NvidiaProbe(error=error)
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return NvidiaProbe(error=f"no NVIDIA driver: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = ""
        try:
            raw = int(pynvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{raw // 1000}.{(raw % 1000) // 10}"
        except Exception:
            pass
        gpus: list[GpuDetails] = []
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            sm = mem_clock = 0
            try:
                sm = int(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM))
                mem_clock = int(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM))
            except Exception:
                pass
            gpus.append(
                GpuDetails(
                    index=i,
                    model=_text(pynvml.nvmlDeviceGetName(h))[:200],
                    vram_mb=int(mem.total) // (1024 * 1024),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(h))[:200],
                    max_sm_clock_mhz=sm,
                    max_mem_clock_mhz=mem_clock,
                )
            )
        return NvidiaProbe(tuple(gpus), driver, cuda)
    except Exception as exc:
        log.warning("NVML probe failed", extra={"err": str(exc)})
        return NvidiaProbe(error=f"NVML probe failed: {exc}")
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def probe_hardware(state_dir: Path | None = None, *, cpu_score: float = 0.0) -> HardwareProbe:
    """Probe this machine; ``state_dir`` is where jobs' files go (its free disk is reported).

    Example::

        report = probe_hardware(Path.home()).report
        assert report.cpu_cores >= 1
    """
    nv = probe_nvidia()
    report = HardwareReport(
        cpu_model=cpu_model(),
        cpu_cores=cpu_cores(),
        memory_mb=memory_mb(),
        disk_free_mb=disk_free_mb(state_dir or Path.home()),
        gpus=tuple(GpuInfo(model=g.model, vram_mb=g.vram_mb, uuid=g.uuid) for g in nv.gpus),
        podman_version=podman_version(),
        cpu_score=cpu_score,
    )
    return HardwareProbe(
        report=report,
        arch=platform.machine(),
        kernel=platform.release(),
        runtime_version=runtime_version(),
        driver_version=nv.driver_version,
        cuda_version=nv.cuda_version,
        gpus=nv.gpus,
        gpu_error=nv.error,
    )
