"""Benchmark the market simulator: jobs per second at 10,000 nodes × 100,000 jobs.

The baseline in the same run is a bare numpy loop that only assigns the same batches
(weighted choice) — the floor any market simulation pays — so ``overhead_vs_bare`` is
a ratio that survives noisy machines. Prints one JSON object.

Run: ``.venv/bin/python bench/sim.py [--quick]``
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from nosgrid.sim.market import MarketConfig, run_market


def bare_assign(nodes: int, jobs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    w = rng.random(nodes)
    started = time.perf_counter()
    done, batch = 0, nodes // 2
    while done < jobs:
        b = min(batch, jobs - done)
        p = w / w.sum()
        node = rng.choice(nodes, size=b, p=p)
        np.add.at(w, node, 1e-9)
        done += b
    return time.perf_counter() - started


def main() -> None:
    quick = "--quick" in sys.argv
    nodes, jobs = (1_000, 10_000) if quick else (10_000, 100_000)
    cfg = MarketConfig(nodes=nodes, jobs=jobs)
    started = time.perf_counter()
    report = run_market(cfg, seed=1)
    elapsed = time.perf_counter() - started
    bare = bare_assign(nodes, jobs, 1)
    print(json.dumps({
        "nodes": nodes, "jobs": jobs, "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed), "goal_seconds": 60,
        "bare_assign_seconds": round(bare, 3),
        "overhead_vs_bare": round(elapsed / bare, 2) if bare > 0 else None,
        "audit_overhead": report["audit_overhead"],
    }, indent=2))


if __name__ == "__main__":
    main()
