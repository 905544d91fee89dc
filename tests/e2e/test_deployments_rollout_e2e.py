"""Deployments on one `nosgrid up --nodes 2` stack with real containers: a revision rolls
out with no failed request through the stable URL while a client polls it every 100 ms;
the stable URL streams SSE; `scheduled` posts at its cron time; `simple-extend` runs past
its first timeout and stops at --max-spend."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli, running_up, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.container]
WEB = Path(__file__).resolve().parents[2] / "examples" / "deployments" / "web.json"
SSE_SERVER = r'''
import http.server, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.send_response(200); self.send_header("content-length", "2")
            self.end_headers(); self.wfile.write(b"ok"); return
        self.send_response(200); self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache"); self.end_headers()
        for i in range(3):
            self.wfile.write(f"data: tick {i}\n\n".encode()); self.wfile.flush()
            time.sleep(0.5)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
'''
HEALTH = [{"type": "http", "path": "/health", "method": "GET", "expected_status": 200,
           "continuous": True}]


def _spec(image: str, cmd: list[str], port: int | None = 8080) -> dict[str, Any]:
    args: dict[str, Any] = {"image": image, "cmd": cmd}
    if port is not None:
        args["expose"] = [{"port": port, "health_checks": HEALTH}]
    return {"version": "0.1", "type": "container",
            "ops": [{"type": "container/run", "id": "web", "args": args}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Cli, Path]]:
    tmp = tmp_path_factory.mktemp("deployments")
    with running_up(tmp, 2, "--heartbeat-timeout", "6") as up:
        me = tmp / "me.json"
        up.cli.run("wallet", "new", "--keypair", str(me))
        up.cli.run("faucet", "200", keypair=me)
        yield up.url, up.cli, me


def _explained(cli: Cli, me: Path, name: str, wait: Any) -> Any:
    """``wait()``, and on a timeout the deployment's events in the failure."""
    try:
        return wait()
    except AssertionError as exc:
        events = cli.json("deployment", "events", name, keypair=me)
        raise AssertionError(f"{exc}; events: {events}") from None


def _write(tmp: Path, name: str, spec: dict[str, Any]) -> str:
    path = tmp / name
    path.write_text(json.dumps(spec))
    return str(path)


def test_a_revision_rolls_out_with_no_failed_request(
        stack: tuple[str, Cli, Path], tmp_path: Path) -> None:
    url, cli, me = stack
    d = cli.json("deployment", "create", str(WEB), "--strategy", "infinite", "--name", "site",
                 "--replicas", "2", "--timeout", "600", keypair=me)
    stable = f"{url}{d['urls']['8080']}"
    wait_until("two healthy replicas", lambda: len(
        [r for r in cli.json("deployment", "show", "site", keypair=me)["running"]
         if r["healthy"]]) == 2, 120)
    answers: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=5) as http:
            while not done.is_set():
                try:
                    r = http.get(stable)
                    (answers if r.status_code == 200 else failures).append(
                        f"{r.status_code} {r.text[:80]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                done.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    web = json.loads(WEB.read_text())
    web["ops"][0]["args"]["cmd"][2] = web["ops"][0]["args"]["cmd"][2].replace(
        "echo hello from", "echo v2 from")
    cli.json("deployment", "update", "site", _write(tmp_path, "v2.json", web), keypair=me)
    try:
        _explained(cli, me, "site", lambda: wait_until("revision 2 rolled out", lambda: (
            (v := cli.json("deployment", "show", "site", keypair=me))["revision"] == 2
            and v["rolling_to"] is None
            and all(r["revision"] == 2 for r in v["running"] if not r["stopping"])), 180))
        wait_until("answers from revision 2", lambda: any("v2 from" in a for a in answers[-5:]),
                   30)
    finally:
        done.set()
        poller.join(10)
    assert not failures, failures[:5]
    assert len(answers) > 20 and any(a.startswith("200 hello from") for a in answers)
    events = [e["kind"] for e in cli.json("deployment", "events", "site", keypair=me)]
    assert "revision_rolled_out" in events
    cli.json("deployment", "archive", "site", keypair=me)


def test_the_stable_url_streams_server_sent_events(
        stack: tuple[str, Cli, Path], tmp_path: Path) -> None:
    url, cli, me = stack
    spec = _spec("localhost/nosgrid-python:test", ["python3", "-c", SSE_SERVER])
    d = cli.json("deployment", "create", _write(tmp_path, "sse.json", spec), "--strategy",
                 "infinite", "--name", "sse", "--timeout", "600", keypair=me)
    wait_until("a healthy replica", lambda: any(
        r["healthy"] for r in cli.json("deployment", "show", "sse", keypair=me)["running"]),
        120)
    chunks = []
    with httpx.stream("GET", f"{url}{d['urls']['8080']}events", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            chunks.append(chunk)
    assert b"".join(chunks) == b"data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n"
    assert len(chunks) >= 2  # passed on as they came, not buffered to the end
    cli.json("deployment", "archive", "sse", keypair=me)


def test_scheduled_posts_on_time_and_simple_extend_stops_at_max_spend(
        stack: tuple[str, Cli, Path], tmp_path: Path) -> None:
    _url, cli, me = stack
    sleeper = _spec("localhost/nosgrid-busybox:test", ["sleep", "3600"], port=None)
    path = _write(tmp_path, "sleep.json", sleeper)
    cli.json("deployment", "create", path, "--strategy", "scheduled", "--name", "cron",
             "--schedule", "* * * * *", "--timeout", "5", keypair=me)
    # 0.001 NOS/s × 20 s = 0.02 per post or extension: 0.05 pays the post and one extension
    ext = cli.json("deployment", "create", path, "--strategy", "simple-extend", "--name",
                   "ext", "--timeout", "20", "--lead", "10", "--max-spend", "0.05", keypair=me)
    job = ext["running"][0]["job_id"]
    wait_until("the extension", lambda: cli.json("job", "status", job, keypair=me)["timeout"]
               == 40, 60)
    ended = wait_until("the replica's end at its extended timeout", lambda: (
        (j := cli.json("job", "status", job, keypair=me))["state"] == "settled" and j), 90)
    assert ended["timeout"] == 40 and ended["seconds_used"] > 20  # past the first timeout
    kinds = [e["kind"] for e in cli.json("deployment", "events", "ext", keypair=me)]
    assert kinds.count("extended") == 1 and "out_of_funds" in kinds
    posted = wait_until("a scheduled run", lambda: [
        e for e in cli.json("deployment", "events", "cron", keypair=me)
        if e["kind"] == "replica_posted"], 90)
    due = int(re.search(r"scheduled run (\d+)", posted[0]["detail"]).group(1))  # type: ignore[union-attr]
    assert due % 60 == 0 and posted[0]["at"] >= due  # at the minute, never before it
    for name in ("cron", "ext"):
        cli.json("deployment", "archive", name, keypair=me)
    assert cli.json("ledger", "verify", keypair=me)["ok"]
