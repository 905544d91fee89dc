"""A job cannot escape: no host files, no network, no other jobs, no privileges, bounded use."""

# ruff: noqa: F811  (pytest fixtures are imported by name)

from __future__ import annotations

import asyncio
import shutil
import stat
from pathlib import Path

import pytest
from executor_fixtures import (  # noqa: F401  (fixtures)
    IS_ROOT,
    LogSink,
    busybox_image,
    host_addresses,
    podman_names,
    python_image,
    requires_podman,
    runtime,
    sink,
    tcp_server,
)

from nosgrid.node.executor import ContainerSpec, MiB, Mount, PodmanRuntime

pytestmark = [pytest.mark.container, requires_podman]


def sh(image: str, script: str, **kw: object) -> ContainerSpec:
    return ContainerSpec(image=image, argv=("sh", "-c", script), **kw)  # type: ignore[arg-type]


async def test_host_files_outside_mounts_are_invisible(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("HOST-SECRET\n")
    script = f"cat {secret} 2>&1; cat /etc/shadow 2>&1; ls /root 2>&1; ls {runtime.state_dir} 2>&1"
    result = await runtime.run(sh(busybox_image, script), deadline_s=20, on_log=sink)
    assert result.status == "exited"
    assert "HOST-SECRET" not in sink.text()
    assert "No such file" in sink.text()


async def test_no_network_reaches_the_host_or_anywhere(
    runtime: PodmanRuntime,
    busybox_image: str,
    sink: LogSink,
    tcp_server: tuple[int, list[str]],
) -> None:
    port, peers = tcp_server
    probes = "; ".join(
        f"echo x | timeout 2 nc {addr} {port} && echo CONNECTED-{addr} || echo blocked-{addr}"
        for addr in host_addresses()
    )
    script = f"{probes}; cat /proc/net/dev | tail -n +3 | cut -d: -f1"
    result = await runtime.run(sh(busybox_image, script), deadline_s=30, on_log=sink)
    assert result.status == "exited", result
    out = sink.text("stdout")
    assert "CONNECTED" not in out and "HOST-SECRET" not in out
    assert out.count("blocked-") == len(host_addresses())
    assert [i.strip() for i in out.splitlines() if not i.startswith("blocked")] == ["lo"]
    assert peers == [], "the host server saw a connection from the container"


async def test_a_job_cannot_see_another_jobs_files_or_processes(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink, tmp_path: Path
) -> None:
    work_a = tmp_path / "job-a"
    other = await runtime.start(
        sh(busybox_image, "echo A-SECRET > secret.txt; exec sleep 30", host_work_dir=work_a)
    )
    try:
        for _ in range(100):
            if (work_a / "secret.txt").exists():
                break
            await asyncio.sleep(0.05)
        script = (
            f"ls /work; cat {work_a}/secret.txt 2>&1; "
            "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^sleep'"
        )
        result = await runtime.run(sh(busybox_image, script), deadline_s=20, on_log=sink)
        assert result.status == "exited"
        assert "A-SECRET" not in sink.text()
        assert sink.text("stdout").splitlines()[-1] == "0", "job A's sleep is invisible"
    finally:
        await runtime.stop(other)


@pytest.mark.skipif(not IS_ROOT, reason="preparing a setuid-root binary needs root")
async def test_setuid_binaries_do_not_raise_privileges(
    runtime: PodmanRuntime, python_image: str, sink: LogSink, tmp_path: Path
) -> None:
    inputs = tmp_path / "suid"
    inputs.mkdir()
    python = Path("/usr/bin/python3.11")  # the same Debian build as in the image
    if not python.is_file():
        pytest.skip("needs the host's /usr/bin/python3.11 (Debian 12)")
    shutil.copy2(python, inputs / "py")
    (inputs / "py").chmod(0o4755 | stat.S_IXUSR)
    script = '/inputs/py -c "import os; print(os.geteuid())"; grep NoNewPrivs /proc/self/status'
    spec = sh(python_image, script, mounts=(Mount(inputs, "/inputs"),))
    result = await runtime.run(spec, deadline_s=20, on_log=sink)
    assert result.ok, (result, sink.lines)
    assert sink.text("stdout").splitlines() == ["1000", "NoNewPrivs:\t1"]


async def test_mounts_namespaces_and_proc_sys_are_refused(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    script = (
        "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo MOUNTED; "
        "unshare -r id && echo UNSHARED; unshare -r -m true && echo UNSHARED-MNT; "
        "echo 1 > /proc/sys/kernel/sysrq && echo WROTE-PROC; "
        "echo x > /sys/kernel/notes 2>/dev/null && echo WROTE-SYS; "
        "grep CapEff /proc/self/status; id -u"
    )
    result = await runtime.run(sh(busybox_image, script), deadline_s=20, on_log=sink)
    assert result.status == "exited"
    out = sink.text("stdout")
    for forbidden in ("MOUNTED", "UNSHARED", "WROTE-PROC", "WROTE-SYS"):
        assert forbidden not in out
    assert "CapEff:\t0000000000000000" in out
    assert out.splitlines()[-1] == "1000"
    assert "Operation not permitted" in sink.text("stderr")


async def test_a_fork_bomb_is_stopped_by_the_pids_limit(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    script = (
        "(i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done) 2>/dev/null; "
        "set -- /proc/[0-9]*; echo $#; "  # counted with builtins only: no fork is left
        "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived"
    )
    spec = sh(busybox_image, script, pids_limit=50)
    result = await runtime.run(spec, deadline_s=5, on_log=sink)
    assert result.status in ("exited", "timed_out"), result
    counts = [int(x) for x in sink.text("stdout").split() if x.isdigit()]
    assert counts and 40 <= counts[0] <= 50
    assert result.name not in podman_names(runtime.state_dir)


async def test_a_memory_bomb_is_killed_with_a_clear_reason(
    runtime: PodmanRuntime, busybox_image: str
) -> None:
    spec = sh(busybox_image, "dd if=/dev/zero of=/dev/null bs=256M count=1", memory_bytes=32 * MiB)
    result = await runtime.run(spec, deadline_s=20)
    assert result.status == "oom_killed", result
    assert result.exit_code == 137
    assert "memory limit of 32 MiB" in result.reason


async def test_an_output_flood_is_capped(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    limit = 64 * 1024
    spec = sh(busybox_image, "yes flood | head -c 20000000; echo done >&2", log_limit_bytes=limit)
    result = await runtime.run(spec, deadline_s=30, on_log=sink)
    assert result.ok, result
    assert result.truncated and "truncated" in result.reason
    assert result.stdout_bytes == 20_000_000
    forwarded = sum(len(line) + 1 for _, line in sink.lines)
    assert forwarded <= limit
    assert set(sink.text("stdout").split()) == {"flood"}


async def test_a_line_without_end_does_not_blow_memory(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    spec = sh(busybox_image, "tr -d '\\n' < /dev/zero | head -c 5000000", log_limit_bytes=200_000)
    result = await runtime.run(spec, deadline_s=30, on_log=sink)
    assert result.ok and result.truncated
    assert max(len(line) for _, line in sink.lines) <= 64 * 1024
