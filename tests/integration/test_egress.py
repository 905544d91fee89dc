"""Egress through the node's filtering proxy: a `pip install` from a local `simple/` index
works in a job that asks for egress, every refused destination is refused, and a job
without egress still has no network at all."""

# ruff: noqa: F811  (pytest fixtures are imported by name)

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from executor_fixtures import (  # noqa: F401  (fixtures)
    IS_ROOT,
    host_addresses,
    requires_podman,
    runtime,
)

from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.node.egress import EgressPolicy, EgressProxy
from nosgrid.node.egress.policy import node_addresses
from nosgrid.node.executor import PodmanRuntime
from nosgrid.node.executor.images import CI_IMAGE, image_exists
from nosgrid.node.runner.job import JobRunner
from simple_index import WHEEL, serve_index


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[int]:
    """The `simple/` index, on 127.0.0.1 (an address the tests' allow list names)."""
    with serve_index(tmp_path / "index") as port:
        yield port


@pytest.fixture
def refused_server() -> Iterator[int]:
    """A server on 127.0.0.1 that the allow list does not name: it must never be reached."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    seen: list[Any] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            seen.append(conn)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
        assert seen == [], "a refused destination was reached"


# --- the proxy on the host (no container) ------------------------------------------------


async def test_the_proxy_allows_the_allow_list_and_refuses_the_rest(
    package_index: int, refused_server: int
) -> None:
    policy = EgressPolicy.parse(f"127.0.0.1:{package_index}", node_addresses())
    proxy = EgressProxy(policy)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]
    await proxy.start(sock)
    try:
        async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{port}", trust_env=False) as c:
            ok = await c.get(f"http://127.0.0.1:{package_index}/simple/tinypkg/")
            assert ok.status_code == 200 and WHEEL in ok.text
            for url in (f"http://127.0.0.1:{refused_server}/", "http://169.254.169.254/latest",
                        "http://10.1.2.3/", "http://[::1]:80/", "http://localhost:22/",
                        "http://100.64.0.1/", "http://192.168.1.1/"):
                refused = await c.get(url)
                assert refused.status_code == 403, url
                assert "refused" in refused.text
            with pytest.raises(httpx.ProxyError):  # CONNECT (HTTPS) is checked the same way
                await c.get("https://169.254.169.254/")
    finally:
        await proxy.close()
    assert [why is None for *_, why in proxy.decisions].count(True) == 1


# --- a real job in Podman ---------------------------------------------------------------------

PROBE = """
import http.client, os, sys, urllib.request
proxy = os.environ["HTTP_PROXY"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
for url in sys.argv[1:]:
    try:
        opener.open(url, timeout=5)
        print("REACHED", url)
    except urllib.error.HTTPError as exc:
        print("refused", exc.code, url)
    except OSError as exc:
        print("failed", url, exc)
import socket
for addr in os.environ.get("DIRECT", "").split():
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        print("REACHED direct", addr)
    except OSError:
        print("blocked direct", addr)
print("interfaces", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
for host in ("169.254.169.254", "10.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=5)
    conn.set_tunnel(host, 443)
    try:
        conn.connect()
        print("REACHED tunnel", host)
    except OSError as exc:
        print("refused tunnel", host, "403" in str(exc))
"""


def egress_job(index_port: int, probes: list[str], network: str = "egress",
               direct: str = "") -> Any:
    script = (
        f"pip install --user --no-cache-dir --disable-pip-version-check --index-url "
        f"http://127.0.0.1:{index_port}/simple/ tinypkg && "
        "python3 -c 'import tinypkg; print(\"VALUE\", tinypkg.VALUE)'; "
        f"python3 -c '{PROBE}' {' '.join(probes)}"
    )
    return parse_job_definition({
        "version": "0.1", "type": "container",
        "meta": {"nosgrid": {"network": network}},
        "ops": [{"type": "container/run", "id": "pip", "args": {
            "image": CI_IMAGE, "cmd": ["sh", "-c", script],
            "env": {"HOME": "/tmp", "DIRECT": direct}}}],
    })


@pytest.mark.container
@requires_podman
@pytest.mark.skipif(not IS_ROOT, reason="entering the pod's network namespace needs root")
async def test_pip_installs_through_the_proxy_and_refused_addresses_stay_refused(
    runtime: PodmanRuntime, tmp_path: Path, package_index: int, refused_server: int
) -> None:
    if not image_exists(CI_IMAGE):
        pytest.skip("nosgrid image build-ci")
    lines: list[str] = []
    policy = EgressPolicy.parse(f"127.0.0.1:{package_index}", node_addresses())
    runner = JobRunner(runtime, tmp_path / "jobs", egress=policy,
                       on_log=lambda op, stream, line: lines.append(line))
    probes = [f"http://127.0.0.1:{refused_server}/", "http://169.254.169.254/latest/meta-data",
              "http://10.0.0.1/"] + [f"http://{a}:{refused_server}/" for a in host_addresses()
                                     if ":" not in a]
    # the isolation tests' escape probe: no direct connection to any host address
    direct = " ".join(f"{a}:{p}" for a in host_addresses() if ":" not in a
                      for p in (refused_server, package_index))
    outcome = await runner.run("egress1", egress_job(package_index, probes, direct=direct),
                               timeout_s=180)
    text = "\n".join(lines)
    assert outcome.status == "completed", (outcome.reason, text)
    assert "VALUE 42" in text, text
    assert "REACHED" not in text
    assert text.count("refused 403") == len(probes), text
    assert text.count("refused tunnel") == 2 and "True" in text
    assert text.count("blocked direct") == len(direct.split()) and "REACHED direct" not in text
    assert "interfaces ['lo']" in text  # the pod has no interface but loopback


@pytest.mark.container
@requires_podman
async def test_without_egress_the_same_job_has_no_way_out(
    runtime: PodmanRuntime, tmp_path: Path, package_index: int
) -> None:
    if not image_exists(CI_IMAGE):
        pytest.skip("nosgrid image build-ci")
    lines: list[str] = []
    policy = EgressPolicy.parse(f"127.0.0.1:{package_index}", node_addresses())
    runner = JobRunner(runtime, tmp_path / "jobs", egress=policy,
                       on_log=lambda op, stream, line: lines.append(line))
    defn = egress_job(package_index, [], network="none")
    outcome = await runner.run("noegress", defn, timeout_s=120)
    assert "VALUE 42" not in "\n".join(lines)
    assert outcome.status == "failed" or "VALUE" not in "\n".join(lines)
    off = JobRunner(runtime, tmp_path / "jobs2", egress=None)
    refused = await off.run("egress-off", egress_job(package_index, []), timeout_s=60)
    assert refused.status == "failed" and "does not offer egress" in refused.reason
