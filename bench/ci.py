"""`nosgrid ci run` on a workflow of N small independent jobs vs the same steps run directly.

nosgrid side: `nosgrid up`'s Stack (a coordinator and 2 node processes) and the same
``CiRun`` the CLI drives: pack and upload the tree, post N jobs, follow their logs, fetch
their results. Baseline, in the same invocation: each job's own runner zip (the same
steps, the same image, the same hardened flags) started with `podman run` directly, 2 at a
time like the 2 nodes. Prints one JSON object: wall times, their ratio, and the time from
the start of the run to the first step starting (the first step marker in the logs).

    python bench/ci.py            # N=4
    NOSGRID_BENCH_CI_JOBS=8 python bench/ci.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nosgrid.cli.up import Stack, _keypair
from nosgrid.integrations.ci.bundle import RUNNER_PATH, TREE_PATH, runner_plan, runner_zip
from nosgrid.integrations.ci.checkout import pack_tree
from nosgrid.integrations.ci.model import parse_workflow
from nosgrid.integrations.ci.plan import JobContexts, instances
from nosgrid.integrations.ci.run import CiRun, RunOptions
from nosgrid.integrations.ci.source import load_source
from nosgrid.node.executor import ContainerSpec, PodmanRuntime
from nosgrid.node.executor.args import run_args
from nosgrid.node.executor.base import Mount
from nosgrid.node.executor.images import CI_IMAGE, build_ci_image, image_exists
from nosgrid.sdk.client import AsyncClient

JOBS = int(os.environ.get("NOSGRID_BENCH_CI_JOBS", "4"))
ROUNDS = 3
PARALLEL = 2


def workflow(n: int) -> str:
    jobs = "".join(f"""
  j{i}:
    runs-on: nosgrid-cpu
    timeout-minutes: 5
    steps:
      - uses: actions/checkout@v4
      - run: echo "job {i}" && python3 -c "print(sum(range(10**5)))"
      - run: ls -la > listing.txt && wc -l listing.txt
""" for i in range(n))
    return "name: bench\non: push\njobs:" + jobs


def direct(root: Path, text: str, runtime: PodmanRuntime, work: Path) -> float:
    """Every job's runner zip in the CI image via `podman run`, PARALLEL at a time."""
    src = load_source(text, "bench.yml")
    wf = parse_workflow(src)
    ctx = JobContexts(github={"sha": "0" * 40, "repository": "local/bench"})
    tree = work / "tree.tar.gz"
    tree.write_bytes(pack_tree(root).data)
    zips: list[Path] = []
    for job_id, job in wf.jobs.items():
        inst = instances(job_id, job, ctx, default_market=None)[0]
        plan = runner_plan(wf, inst, contexts={"github": ctx.github}, secrets={},
                           timeout_s=300, caches={})
        path = work / f"{job_id}.pyz"
        path.write_bytes(runner_zip(plan))
        zips.append(path)

    def one(i: int, pyz: Path) -> None:
        job_work = work / f"w{i}"
        out = work / f"o{i}"
        for d in (job_work, out):
            d.mkdir(exist_ok=True)
            d.chmod(0o777)
        spec = ContainerSpec(image=CI_IMAGE, argv=("python3", RUNNER_PATH),
                             mounts=(Mount(pyz, RUNNER_PATH), Mount(tree, TREE_PATH),
                                     Mount(out, "/outputs", read_only=False)),
                             memory_bytes=1024 * 1024 * 1024)
        args, env = run_args(spec, name=f"nosgrid-bench-ci-{os.getpid()}-{i}",
                             host_work_dir=job_work, seccomp_profile=runtime.seccomp_profile)
        subprocess.run(["podman", *args], env={**runtime._env, **env}, capture_output=True,
                       check=True)
        result = json.loads((out / "ci" / "result.json").read_text())
        assert result["status"] == "success", result

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda a: one(*a), enumerate(zips)))
    return time.perf_counter() - started


async def through_nosgrid(url: str, kp: Any, root: Path, text: str) -> dict[str, float]:
    src = load_source(text, "bench.yml")
    wf = parse_workflow(src)
    async with AsyncClient(url, kp) as client:
        run = CiRun(client, wf, root, RunOptions(market="cpu"), filename="bench.yml")
        started = time.perf_counter()
        mono0 = time.monotonic()
        report = await run.run()
        wall = time.perf_counter() - started
    assert report.ok, [(r.inst.title, r.state, r.reason) for r in report.records]
    first = min(r.first_step_at for r in report.records if r.first_step_at is not None)
    return {"wall_s": wall, "first_step_s": first - mono0,
            "cost": float(report.total_cost)}


def main() -> None:
    if not image_exists(CI_IMAGE):
        build_ci_image()
    text = workflow(JOBS)
    with tempfile.TemporaryDirectory(prefix="nosgrid-bench-ci-") as tmp:
        base = Path(tmp)
        root = base / "repo"
        (root / "src").mkdir(parents=True)
        (root / "src" / "app.py").write_text("print('hi')\n")
        (root / "README.md").write_text("bench\n")
        work = base / "direct"
        work.mkdir()
        runtime = PodmanRuntime(base / "direct-state")
        stack = Stack(base / "up", nodes=PARALLEL, port=0)
        try:
            stack.start()
            stack.wait_nodes()
            kp = _keypair(base / "client.json")
            from nosgrid.sdk import Client

            with Client(stack.url, kp) as c:
                c.faucet("1000")
            asyncio.run(through_nosgrid(stack.url, kp, root, text))  # warm up both paths
            (work / "warm").mkdir()
            direct(root, text, runtime, work / "warm")
            ours: list[dict[str, float]] = []
            theirs: list[float] = []
            for i in range(ROUNDS):
                (work / str(i)).mkdir()
                theirs.append(direct(root, text, runtime, work / str(i)))
                ours.append(asyncio.run(through_nosgrid(stack.url, kp, root, text)))
        finally:
            stack.stop()
    wall = statistics.median(r["wall_s"] for r in ours)
    base_wall = statistics.median(theirs)
    print(json.dumps({
        "benchmark": "ci",
        "jobs": JOBS,
        "parallel": PARALLEL,
        "rounds": ROUNDS,
        "direct_podman_run_wall_median_s": round(base_wall, 4),
        "nosgrid_ci_run_wall_median_s": round(wall, 4),
        "ratio": round(wall / base_wall, 3),
        "time_to_first_step_median_s": round(
            statistics.median(r["first_step_s"] for r in ours), 4),
        "cost_per_run_base_units": ours[-1]["cost"],
    }))


if __name__ == "__main__":
    main()
