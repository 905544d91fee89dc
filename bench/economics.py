"""Benchmark the economic rules; prints one JSON object.

* assignments per second with 10,000 eligible idle nodes: WeightedMatcher vs FifoMatcher
  in the same run, both on a fixed candidate tuple (steady idle set, weights prepared
  once and cached) and on a fresh candidate list per pick (nothing reusable);
* cost of one stakers' fee event with 1k, 10k and 100k stakers: the O(1) accumulator
  (distribute + settle/claim one staker) vs the naive loop over every staker.

Run: ``.venv/bin/python bench/economics.py [--quick]``
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable

from nosgrid.core import staking as sk
from nosgrid.core.markets import FifoMatcher, NodeCandidate
from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.core.reputation import WeightedMatcher

NOS = BASE_UNITS_PER_NOS


def _rate(fn: Callable[[int], object], min_seconds: float, min_calls: int = 3) -> float:
    """Calls per second of ``fn(i)``."""
    calls, started = 0, time.perf_counter()
    while True:
        fn(calls)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and calls >= min_calls:
            return calls / elapsed


def bench_matchers(n: int, seconds: float) -> dict[str, object]:
    rng = random.Random(7)
    cands = tuple(
        NodeCandidate(f"node{i}", waiting_since=rng.random() * 1e6,
                      stake=rng.randint(1, 100_000) * NOS, reputation=rng.random(),
                      jobs_done=rng.randint(0, 500))
        for i in range(n))
    fifo, weighted = FifoMatcher(), WeightedMatcher()
    fresh = list(cands)
    out = {
        "nodes": n,
        "fifo_picks_per_s": _rate(lambda i: fifo.pick(cands, i), seconds),
        "weighted_cached_picks_per_s": _rate(lambda i: weighted.pick(cands, i), seconds),
        "weighted_fresh_list_picks_per_s": _rate(lambda i: weighted.pick(fresh, i), seconds),
    }
    prepared = weighted.prepare(cands)
    out["weighted_prepared_picks_per_s"] = _rate(prepared.pick, seconds)

    # a scheduling round: prepare the idle set once, then assign job after job, each
    # assigned node leaving the idle set (pick + without)
    def round_of(jobs: int) -> None:
        pool = weighted.prepare(fresh)
        for seed in range(jobs):
            i = pool.pick_index(seed)
            assert i is not None
            pool = pool.without(i)

    out["weighted_round_1000_jobs_assignments_per_s"] = 1000 * _rate(
        lambda i: round_of(1000), seconds, min_calls=1)
    out["weighted_cached_vs_fifo"] = (out["weighted_cached_picks_per_s"]  # type: ignore[operator]
                                      / out["fifo_picks_per_s"])
    out["weighted_fresh_vs_fifo"] = (out["weighted_fresh_list_picks_per_s"]  # type: ignore[operator]
                                     / out["fifo_picks_per_s"])
    return out


def bench_rewards(n: int, seconds: float) -> dict[str, object]:
    rng = random.Random(n)
    pool = sk.RewardPool()
    accounts: list[sk.StakeAccount] = []
    for i in range(n):
        r = sk.stake(pool, None, f"s{i}", rng.randint(1, 10_000) * NOS, rng.randint(14, 365),
                     now=0)
        pool = r.pool
        accounts.append(r.account)
    state = {"pool": pool}

    def accumulator_event(i: int) -> None:
        p = sk.distribute_fees(state["pool"], 1_000_000 + i, now=i).pool
        j = i % n
        accounts[j] = sk.settle_rewards(p, accounts[j])  # the one staker touched
        state["pool"] = p

    scores = {a.owner: a.score for a in accounts}
    owed = dict.fromkeys(scores, 0)
    total = sum(scores.values())

    def naive_event(i: int) -> None:
        fee = 1_000_000 + i
        for owner, s in scores.items():
            owed[owner] += fee * s // total

    acc = _rate(accumulator_event, seconds, min_calls=100)
    naive = _rate(naive_event, seconds)
    return {"stakers": n, "accumulator_us_per_event": 1e6 / acc,
            "naive_us_per_event": 1e6 / naive, "naive_vs_accumulator": acc / naive}


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 0.2 if quick else 1.0
    rewards = [bench_rewards(n, seconds) for n in (1_000, 10_000, 100_000)]
    acc_times = [float(r["accumulator_us_per_event"]) for r in rewards]  # type: ignore[arg-type]
    result = {
        "bench": "economics",
        "python": sys.version.split()[0],
        "matching": bench_matchers(10_000, seconds),
        "rewards": rewards,
        # flat means the 100k-staker event costs about what the 1k one does
        "accumulator_100k_over_1k": acc_times[-1] / acc_times[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
