"""Deployments: how fast a dead replica is replaced, what clients see, and what the stable
URL costs.

On a real ``nosgrid up --nodes 3`` stack, an ``infinite`` deployment of
``examples/deployments/web.json`` (busybox httpd, K=2, grace 2 s) is measured:

* ``replacement_s``: from a replica's first failed health check (the coordinator's
  ``unhealthy_since``, whole seconds) to a healthy replacement answering through the stable
  URL, over ``--rounds`` rounds (its health file removed inside the container), p50/p99;
  next to what bounds it from below, measured in the same run: the grace window, the
  nodes' continuous check interval, and a bare ``podman run`` of the same image to its
  first HTTP 200 (``direct_start_s``);
* ``failed_requests``: requests through the stable URL that failed while a client polled it
  every 100 ms, during the replacements and during a rollout of a new revision (goal 0);
* ``proxy_overhead_ms``: p50 of a GET through the stable URL against the same GET straight
  to the replica's own endpoint.

Prints one JSON object. Usage: ``python bench/deployments.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from nosgrid.cli.up import Stack, _keypair
from nosgrid.node.executor import BUSYBOX_IMAGE
from nosgrid.node.executor.config import podman_env
from nosgrid.node.executor.images import build_test_images
from nosgrid.node.runner.plan import RunnerLimits
from nosgrid.sdk import Client

WEB = Path(__file__).resolve().parents[1] / "examples" / "deployments" / "web.json"
GRACE_S = 2


class Poller:
    """A client polling the stable URL every 100 ms, counting what failed."""

    def __init__(self, url: str) -> None:
        self.url, self.ok, self.failed = url, 0, 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                try:
                    r = http.get(self.url)
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed += 1
                        self.errors.append(f"{r.status_code} {r.text[:60]}")
                except httpx.HTTPError as exc:
                    self.failed += 1
                    self.errors.append(repr(exc)[:80])
                self.stop.wait(0.1)

    def close(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(10)
        return {"ok": self.ok, "failed": self.failed, "errors": self.errors[:5]}


def wait(what: str, check: Any, timeout: float = 180) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := check():
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def healthy(c: Client, ref: str) -> list[Any]:
    return [r for r in c.deployment(ref).running if r.healthy and not r.stopping]


def podman(data: Path, *args: str) -> str:
    env = podman_env(data / "executor")
    import os

    return subprocess.run(["podman", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, check=True).stdout


def direct_start(data: Path) -> float:
    """A bare ``podman run`` of the service's image to its first HTTP 200."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = json.loads(WEB.read_text())["ops"][0]["args"]["cmd"]
    env = {**os.environ, **podman_env(data / "direct")}
    t0 = time.perf_counter()
    cid = subprocess.run(["podman", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080",
                          BUSYBOX_IMAGE, *cmd], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        wait("direct start", lambda: _ok(f"http://127.0.0.1:{port}/health"), 60)
        return time.perf_counter() - t0
    finally:
        subprocess.run(["podman", "rm", "-f", cid], env=env, capture_output=True)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def latency_ms(url: str, n: int = 200) -> float:
    with httpx.Client(timeout=5) as http:
        http.get(url)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            http.get(url).raise_for_status()
            samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    build_test_images(if_missing=True, names=(BUSYBOX_IMAGE,))
    with tempfile.TemporaryDirectory(prefix="nosgrid-bench-deploy-") as tmp:
        root = Path(tmp)
        stack = Stack(root / "up", nodes=3, port=0)
        data = root / "up"
        try:
            stack.start()
            stack.wait_nodes()
            with Client(stack.url, _keypair(root / "client.json")) as c:
                c.faucet("500")
                d = c.create_deployment(strategy="infinite", spec_text=WEB.read_text(),
                                        name="web", replicas=2, timeout=1800,
                                        grace_s=GRACE_S)
                stable = f"{stack.url}{d.urls['8080']}"
                wait("two healthy replicas", lambda: len(healthy(c, "web")) == 2)
                direct = next(iter(healthy(c, "web")[0].endpoints.values()))
                overhead = {"stable_url_p50_ms": round(latency_ms(stable), 3),
                            "direct_p50_ms": round(latency_ms(direct + "/"), 3)}
                overhead["added_ms"] = round(overhead["stable_url_p50_ms"]
                                             - overhead["direct_p50_ms"], 3)
                # what any request to this coordinator costs (its middleware stack), for scale
                overhead["coordinator_healthz_p50_ms"] = round(
                    latency_ms(f"{stack.url}/healthz"), 3)
                poller = Poller(stable)
                replacements = []
                for _ in range(args.rounds):
                    sick = healthy(c, "web")[0]
                    for cid in podman(data, "ps", "-q", "--filter",
                                      f"label=nosgrid.job={sick.job_id}").split():
                        podman(data, "exec", cid, "rm", "/tmp/www/health")
                    seen = wait("the failed check", lambda s=sick: next(
                        (r for r in c.deployment("web").running
                         if r.job_id == s.job_id and r.healthy is False), None) or (
                        c.job(s.job_id).state == "settled" and s))
                    since = seen.unhealthy_since
                    wait("a healthy replacement", lambda s=sick: len(
                        [r for r in healthy(c, "web") if r.job_id != s.job_id]) == 2)
                    served = time.time()
                    if since is None:  # stopped before the poll saw it: read the event
                        ev = [e for e in c.deployment_events("web").events
                              if e.kind == "replica_unhealthy" and e.job_id == sick.job_id]
                        since = int(ev[-1].detail.split("since ")[1].split()[0])
                    replacements.append(served - since)
                during_replacements = poller.close()
                poller = Poller(stable)
                web = json.loads(WEB.read_text())
                web["ops"][0]["args"]["cmd"][2] = web["ops"][0]["args"]["cmd"][2].replace(
                    "hello from", "v2 from")
                t0 = time.monotonic()
                c.update_deployment("web", spec=web)
                wait("revision 2 rolled out", lambda: (
                    (v := c.deployment("web")).revision == 2 and v.rolling_to is None
                    and all(r.revision == 2 for r in v.running if not r.stopping)), 300)
                rollout_s = time.monotonic() - t0
                during_rollout = poller.close()
                verify = c.ledger_verify()
            baseline = direct_start(data)
        finally:
            stack.stop()
    interval = RunnerLimits().continuous_interval_s
    print(json.dumps({
        "benchmark": "deployments",
        "rounds": args.rounds,
        "replacement_s": {"p50": pct(replacements, 0.5), "p99": pct(replacements, 0.99),
                          "all": [round(x, 3) for x in replacements]},
        "lower_bound_parts_s": {"grace": GRACE_S, "continuous_check_interval": interval,
                                "direct_start_s": round(baseline, 3),
                                "maintenance_interval": 2.0},
        "ratio_replacement_p50_vs_grace_plus_start": round(
            pct(replacements, 0.5) / (GRACE_S + baseline), 3),
        "failed_requests": {"during_replacements": during_replacements,
                            "during_rollout": during_rollout},
        "rollout_s": round(rollout_s, 2),
        "proxy_overhead_ms": overhead,
        "ledger_verify_ok": verify.ok,
    }, indent=1))


if __name__ == "__main__":
    main()
