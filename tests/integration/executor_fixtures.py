"""Fixtures for the Podman executor tests: a runtime with its own state dir, images, a log sink."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nosgrid.node.executor import BUSYBOX_IMAGE, PYTHON_IMAGE, PodmanRuntime
from nosgrid.node.executor.config import podman_env
from nosgrid.node.executor.images import build_test_images, image_exists

HAVE_PODMAN = shutil.which("podman") is not None
IS_ROOT = os.geteuid() == 0

requires_podman = pytest.mark.skipif(
    not HAVE_PODMAN, reason="podman is not installed (apt-get install -y podman runc)"
)


@dataclass
class LogSink:
    """Collects (stream, line) pairs from the executor's log callback."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    def text(self, stream: str | None = None) -> str:
        return "\n".join(line for s, line in self.lines if stream is None or s == stream)


@pytest.fixture(scope="session")
def busybox_image() -> str:
    if not HAVE_PODMAN:
        pytest.skip("podman is not installed")
    build_test_images(if_missing=True, names=(BUSYBOX_IMAGE,))
    return BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def python_image() -> str:
    if not HAVE_PODMAN:
        pytest.skip("podman is not installed")
    if not image_exists(PYTHON_IMAGE):
        pytest.skip("run `nosgrid image build-test` to build localhost/nosgrid-python:test")
    return PYTHON_IMAGE


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[PodmanRuntime]:
    rt = PodmanRuntime(tmp_path / "state")
    yield rt
    leftover = await rt.list_containers(label=f"nosgrid.test={tmp_path.name}")
    for name in leftover:
        await rt.remove(name)


@pytest.fixture
def sink() -> LogSink:
    return LogSink()


def podman_names(state_dir: Path) -> list[str]:
    """Every container name podman knows, running or not."""
    out = subprocess.run(
        ["podman", "ps", "--all", "--format", "{{.Names}}"],
        capture_output=True,
        env=podman_env(state_dir),
        check=True,
    ).stdout.decode()
    return out.split()


@pytest.fixture
def tcp_server() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on 0.0.0.0 (so on 127.0.0.1 and every host address): (port, peers seen)."""
    import socket
    import threading

    peers: list[str] = []
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peers.append(addr[0])
            conn.sendall(b"HOST-SECRET\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], peers
    stop.set()
    thread.join()
    srv.close()


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses (from `ip`), loopback first."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, check=False
    ).stdout.decode()
    addrs = [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]
    return sorted(set(addrs) | {"127.0.0.1"}, key=lambda a: a != "127.0.0.1")


async def wait_until(predicate: object, timeout_s: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if callable(predicate) and predicate():
            return True
        await asyncio.sleep(0.05)
    return False
