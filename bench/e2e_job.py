"""A 1-second container job posted through nosgrid end to end vs the same `podman run`.

nosgrid side: a real coordinator process (uvicorn) and a real node agent process, started
by `nosgrid up`'s Stack; the client posts the job, the node long-polls it, runs it in the
hardened container and reports; the client sees it settled. Baseline: the same hardened
`podman run` the executor builds, invoked directly. Rounds are interleaved so machine
drift hits both alike. Prints one JSON object with the ratio (goal ≤ 1.10) and where the
overhead goes (from the job's own timestamps and the client's view).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from nosgrid.cli.up import Stack, _keypair
from nosgrid.node.executor import BUSYBOX_IMAGE, ContainerSpec, PodmanRuntime
from nosgrid.node.executor.args import run_args
from nosgrid.node.executor.images import build_test_images
from nosgrid.sdk import Client

ROUNDS = 5
CMD = "echo start; sleep 1; echo end"
SPEC = {"version": "0.1", "type": "container",
        "ops": [{"type": "container/run", "id": "sleep1",
                 "args": {"image": BUSYBOX_IMAGE, "cmd": CMD}}]}


def direct_run(runtime: PodmanRuntime, work: Path, i: int) -> float:
    spec = ContainerSpec(image=BUSYBOX_IMAGE, argv=("/bin/sh", "-c", CMD),
                         memory_bytes=512 * 1024 * 1024)
    args, env = run_args(spec, name=f"nosgrid-bench-e2e-{i}", host_work_dir=work,
                         seccomp_profile=runtime.seccomp_profile)
    started = time.perf_counter()
    subprocess.run(["podman", *args], env={**runtime._env, **env}, capture_output=True,
                   check=True)
    return time.perf_counter() - started


def nosgrid_run(c: Client) -> dict[str, float]:
    t0 = time.perf_counter()
    job = c.post_job(spec=SPEC, market="cpu", timeout=30)
    t_posted = time.perf_counter()
    for _chunk in c.follow_logs(job.id):  # pushed by the server; ends when the job ends
        pass
    view = c.job(job.id)
    t_done = time.perf_counter()
    assert view.state == "settled" and not view.fault, view
    return {"total_s": t_done - t0, "post_s": t_posted - t0,
            "assigned_to_started_s": float((view.started_at or 0) - (view.assigned_at or 0)),
            "started_to_finished_s": float((view.finished_at or 0) - (view.started_at or 0))}


def main() -> None:
    build_test_images(if_missing=True, names=(BUSYBOX_IMAGE,))
    with tempfile.TemporaryDirectory(prefix="nosgrid-bench-e2e-") as tmp:
        root = Path(tmp)
        stack = Stack(root / "up", nodes=1, port=0)
        runtime = PodmanRuntime(root / "direct-state")
        work = root / "work"
        work.mkdir()
        try:
            stack.start()
            stack.wait_nodes()
            with Client(stack.url, _keypair(root / "client.json")) as c:
                c.faucet("100")
                nosgrid_run(c)  # warm up both paths
                direct_run(runtime, work, -1)
                ours: list[dict[str, float]] = []
                direct: list[float] = []
                for i in range(ROUNDS):
                    direct.append(direct_run(runtime, work, i))
                    ours.append(nosgrid_run(c))
        finally:
            stack.stop()
    med: dict[str, Any] = {k: round(statistics.median(r[k] for r in ours), 4) for k in ours[0]}
    direct_med = statistics.median(direct)
    print(json.dumps({
        "benchmark": "e2e_job",
        "rounds": ROUNDS,
        "direct_podman_run_median_s": round(direct_med, 4),
        "nosgrid_post_to_settled_median_s": med["total_s"],
        "ratio": round(med["total_s"] / direct_med, 3),
        "overhead_s": round(med["total_s"] - direct_med, 4),
        "breakdown_median_s": {
            "client_post_request": med["post_s"],
            "assigned_to_started (whole seconds, coordinator clock)": med["assigned_to_started_s"],
            "started_to_finished (whole seconds)": med["started_to_finished_s"],
        },
    }))


if __name__ == "__main__":
    main()
