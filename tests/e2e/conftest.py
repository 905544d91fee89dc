"""E2E helpers: a real `nosgrid coordinator start` process and the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

NOSGRID = [sys.executable, "-m", "nosgrid.cli.main"]


@dataclass
class Cli:
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, keypair: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if keypair is not None:
            env["NOSGRID_KEYPAIR"] = str(keypair)
        proc = subprocess.run([*NOSGRID, *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        if check:
            assert proc.returncode == 0, f"{args}: {proc.stderr}{proc.stdout}"
        return proc

    def json(self, *args: str, keypair: Path | None = None) -> Any:
        return json.loads(self.run(*args, "--json", keypair=keypair).stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll ``check`` every 0.2 s until it returns something truthy; return that."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def running_coordinator(tmp_path: Path, *extra: str) -> Iterator[tuple[str, Cli, Path]]:
    """A `nosgrid coordinator start` process with the faucet and an admin keypair, ready.

    Yields (url, cli, admin keypair path); ``extra`` are more `coordinator start` flags.
    """
    env = {**os.environ, "NOSGRID_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["NOSGRID_URL"] = url
    cli = Cli(env)
    admin = tmp_path / "admin.json"
    pubkey = cli.json("wallet", "new", "--keypair", str(admin))["pubkey"]
    proc = subprocess.Popen(
        [*NOSGRID, "coordinator", "start", "--data-dir", str(tmp_path / "coord"), "--port",
         str(port), "--faucet", "--admin", pubkey, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "coordinator did not start"
                time.sleep(0.1)
        yield url, cli, admin
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[str, Cli, Path]]:
    """A coordinator process with the faucet; yields (url, cli, admin keypair path)."""
    with running_coordinator(tmp_path) as running:
        yield running


@dataclass
class Up:
    """A running `nosgrid up`: its URL, a CLI in its environment, its state directory."""

    url: str
    cli: Cli
    data: Path
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_up(home: Path, nodes: int, *extra: str,
               env: dict[str, str] | None = None) -> Iterator[Up]:
    """`nosgrid up --nodes N` as a user starts it (``extra``: more flags), ready when its
    nodes are online in ``cpu``; stopped with SIGINT, as Ctrl-C does, when the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOME": str(home), "NOSGRID_URL": url, **(env or {})}
    data = home / "up"
    proc = subprocess.Popen(
        [*NOSGRID, "up", "--nodes", str(nodes), "--port", str(port), "--data-dir", str(data),
         *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)

    def online() -> bool:
        try:
            return bool(httpx.get(f"{url}/v1/markets/cpu", timeout=1).json()
                        ["nodes_online"] == nodes)
        except (httpx.HTTPError, KeyError, ValueError):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return False

    try:
        wait_until(f"{nodes} node(s) online", online, timeout=120)
        yield Up(url, Cli(env), data, proc)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
