"""Executor overhead: a 1-second job through PodmanRuntime vs the same hardened `podman run`."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nosgrid.node.executor import BUSYBOX_IMAGE, ContainerSpec, PodmanRuntime
from nosgrid.node.executor.args import run_args
from nosgrid.node.executor.images import build_test_images

ROUNDS = 5
JOB = ("sh", "-c", "echo start; sleep 1; echo end")


def direct_run(runtime: PodmanRuntime, spec: ContainerSpec, work: Path, i: int) -> float:
    args, env = run_args(
        spec, name=f"nosgrid-bench-direct-{i}", host_work_dir=work,
        seccomp_profile=runtime.seccomp_profile,
    )  # fmt: skip
    started = time.perf_counter()
    subprocess.run(["podman", *args], env={**runtime._env, **env}, capture_output=True, check=True)
    return time.perf_counter() - started


async def executor_run(runtime: PodmanRuntime, spec: ContainerSpec) -> dict[str, float]:
    lines: list[float] = []
    t0 = time.perf_counter()
    handle = await runtime.start(spec, on_log=lambda _s, _l: lines.append(time.perf_counter()))
    t_started = time.perf_counter()
    result = await runtime.wait(handle, deadline_s=30)
    t_end = time.perf_counter()
    assert result.ok, result
    return {
        "total_s": t_end - t0,
        "spawn_s": t_started - t0,
        "to_first_log_s": lines[0] - t0 if lines else float("nan"),
        "last_log_to_done_s": t_end - lines[-1] if lines else float("nan"),
    }


async def main() -> None:
    build_test_images(if_missing=True, names=(BUSYBOX_IMAGE,))
    with tempfile.TemporaryDirectory(prefix="nosgrid-bench-") as tmp:
        runtime = PodmanRuntime(Path(tmp) / "state")
        spec = ContainerSpec(image=BUSYBOX_IMAGE, argv=JOB, memory_bytes=64 * 1024 * 1024)
        work = Path(tmp) / "work"
        work.mkdir()
        direct: list[float] = []
        ours: list[dict[str, float]] = []
        direct_run(runtime, spec, work, -1)  # warm caches
        for i in range(ROUNDS):  # interleaved, so drift hits both alike
            direct.append(direct_run(runtime, spec, work, i))
            ours.append(await executor_run(runtime, spec))
        rm_times = []
        for i in range(3):
            name = f"nosgrid-bench-rm-{i}"
            subprocess.run(
                ["podman", "create", "--name", name, BUSYBOX_IMAGE, "true"],
                env=runtime._env, capture_output=True, check=True,
            )  # fmt: skip
            t = time.perf_counter()
            await runtime.remove(name)
            rm_times.append(time.perf_counter() - t)
    med = {k: statistics.median(r[k] for r in ours) for k in ours[0]}
    direct_med = statistics.median(direct)
    report = {
        "bench": "executor",
        "job": "busybox: echo; sleep 1; echo (hardened: seccomp, read-only, no network, limits)",
        "rounds": ROUNDS,
        "direct_podman_run_median_s": round(direct_med, 3),
        "executor_run_median_s": round(med["total_s"], 3),
        "ratio": round(med["total_s"] / direct_med, 3),
        "overhead_s": round(med["total_s"] - direct_med, 3),
        "breakdown_median_s": {
            "spawn_podman": round(med["spawn_s"], 4),
            "start_to_first_log_line": round(med["to_first_log_s"], 3),
            "last_log_line_to_result (exit, --rm removal, cleanup)": round(
                med["last_log_to_done_s"], 3
            ),
            "podman_rm_f_t0_of_a_stopped_container": round(statistics.median(rm_times), 3),
        },
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
