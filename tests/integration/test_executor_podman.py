"""The Podman executor runs jobs: logs, exit codes, work dir, inputs, env, deadline, cleanup."""

# ruff: noqa: F811  (pytest fixtures are imported by name)

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from executor_fixtures import (  # noqa: F401  (fixtures)
    LogSink,
    busybox_image,
    podman_names,
    python_image,
    requires_podman,
    runtime,
    sink,
)

from nosgrid.node.executor import ContainerSpec, MiB, Mount, PodmanRuntime

pytestmark = [pytest.mark.container, requires_podman]


async def test_job_runs_and_logs_stream_in_order(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    spec = ContainerSpec(
        image=busybox_image, argv=("sh", "-c", "echo one; echo two; echo oops >&2; id -u")
    )
    result = await runtime.run(spec, deadline_s=20, on_log=sink)
    assert result.ok, result
    assert sink.text("stdout").splitlines() == ["one", "two", "1000"]
    assert sink.text("stderr") == "oops"
    assert result.stdout_bytes == len("one\ntwo\n1000\n")
    assert result.stderr_bytes == len("oops\n")
    assert not result.truncated
    assert result.finished_at >= result.started_at


async def test_logs_arrive_while_the_job_runs(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    spec = ContainerSpec(image=busybox_image, argv=("sh", "-c", "echo early; sleep 1; echo late"))
    handle = await runtime.start(spec, on_log=sink)
    for _ in range(100):
        if sink.lines:
            break
        await asyncio.sleep(0.02)
    assert sink.lines == [("stdout", "early")]
    result = await runtime.wait(handle, deadline_s=20)
    assert result.ok and sink.text() == "early\nlate"


async def test_exit_code_is_reported(runtime: PodmanRuntime, busybox_image: str) -> None:
    result = await runtime.run(
        ContainerSpec(image=busybox_image, argv=("sh", "-c", "exit 42")), deadline_s=20
    )
    assert (result.status, result.exit_code) == ("exited", 42)
    assert not result.ok


async def test_work_dir_is_writable_and_outputs_are_collected(
    runtime: PodmanRuntime, busybox_image: str, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    spec = ContainerSpec(
        image=busybox_image,
        argv=(
            "sh",
            "-c",
            "pwd > where.txt; mkdir -p sub; echo deep > sub/a.txt; "
            "echo skip > other.log; ln -s /etc/passwd sub/link.txt",
        ),
        outputs=("*.txt", "sub"),
        output_dir=out,
    )
    result = await runtime.run(spec, deadline_s=20)
    assert result.ok, result
    assert (out / "where.txt").read_text() == "/work\n"
    assert (out / "sub" / "a.txt").read_text() == "deep\n"
    assert not (out / "other.log").exists()
    assert not (out / "sub" / "link.txt").exists(), "symlinks are never followed out"
    assert sorted(p.name for p in result.outputs) == ["a.txt", "where.txt"]


async def test_root_filesystem_is_read_only_but_tmp_is_writable(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    spec = ContainerSpec(
        image=busybox_image,
        argv=(
            "sh",
            "-c",
            "touch /etc/x 2>/dev/null && echo etc-writable; echo ok > /tmp/t && cat /tmp/t",
        ),
    )
    result = await runtime.run(spec, deadline_s=20, on_log=sink)
    assert result.ok and sink.text() == "ok"


async def test_inputs_are_mounted_read_only(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "data.txt").write_text("input-data\n")
    spec = ContainerSpec(
        image=busybox_image,
        argv=("sh", "-c", "cat /inputs/data.txt; echo x > /inputs/data.txt || echo refused"),
        mounts=(Mount(inputs, "/inputs"),),
    )
    result = await runtime.run(spec, deadline_s=20, on_log=sink)
    assert result.ok
    assert sink.text("stdout") == "input-data\nrefused"
    assert (inputs / "data.txt").read_text() == "input-data\n"


async def test_env_reaches_the_job(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    spec = ContainerSpec(
        image=busybox_image,
        argv=("sh", "-c", 'echo "$GREETING|$PATH|$EMPTY|"'),
        env={"GREETING": "hello world; $(not a shell)", "PATH": "/bin", "EMPTY": ""},
    )
    result = await runtime.run(spec, deadline_s=20, on_log=sink)
    assert result.ok
    assert sink.text() == "hello world; $(not a shell)|/bin||"


async def test_entrypoint_overrides_the_image(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    spec = ContainerSpec(image=busybox_image, entrypoint=("echo", "from-entrypoint"), argv=("x",))
    result = await runtime.run(spec, deadline_s=20, on_log=sink)
    assert result.ok and sink.text() == "from-entrypoint x"


async def test_deadline_kills_the_job(
    runtime: PodmanRuntime, busybox_image: str, tmp_path: Path
) -> None:
    spec = ContainerSpec(image=busybox_image, argv=("sleep", "30"))
    result = await runtime.run(spec, deadline_s=1.0)
    assert result.status == "timed_out"
    assert result.exit_code is None
    assert "deadline" in result.reason
    assert result.name not in podman_names(runtime.state_dir)


async def test_container_and_work_dir_are_removed_after_the_run(
    runtime: PodmanRuntime, busybox_image: str
) -> None:
    result = await runtime.run(ContainerSpec(image=busybox_image, argv=("true",)), deadline_s=20)
    assert result.ok
    assert result.name not in podman_names(runtime.state_dir)
    assert list(runtime.work_root.iterdir()) == []


async def test_cancelling_a_run_removes_the_container(
    runtime: PodmanRuntime, busybox_image: str
) -> None:
    spec = ContainerSpec(image=busybox_image, argv=("sleep", "30"), name="nosgrid-cancel-me")
    task = asyncio.create_task(runtime.run(spec, deadline_s=60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "nosgrid-cancel-me" not in podman_names(runtime.state_dir)
    assert list(runtime.work_root.iterdir()) == []


async def test_missing_image_is_a_clean_failed_to_start(runtime: PodmanRuntime) -> None:
    spec = ContainerSpec(image="localhost/nosgrid-does-not-exist:1", argv=("true",))
    result = await runtime.run(spec, deadline_s=20)
    assert result.status == "failed_to_start"
    assert "not on this node" in result.reason
    assert result.name not in podman_names(runtime.state_dir)


async def test_missing_command_is_a_clean_failed_to_start(
    runtime: PodmanRuntime, busybox_image: str
) -> None:
    result = await runtime.run(
        ContainerSpec(image=busybox_image, argv=("/no/such/cmd",)), deadline_s=20
    )
    assert result.status == "failed_to_start"
    assert "not found" in result.reason


async def test_a_service_publishes_its_port_on_host_loopback_only(
    runtime: PodmanRuntime, busybox_image: str, tmp_path: Path
) -> None:
    work = tmp_path / "site"
    work.mkdir()
    (work / "index.html").write_text("served-from-container\n")
    with socket.socket() as probe:  # pick a free host port
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    spec = ContainerSpec(
        image=busybox_image,
        argv=("httpd", "-f", "-p", "8080", "-h", "/work"),
        host_work_dir=work,
        ports={8080: host_port},
    )
    svc = await runtime.start(spec)
    try:
        health = await runtime.exec(svc, ["cat", "/work/index.html"])
        assert health.exit_code == 0 and health.output == "served-from-container\n"
        body = b""
        for _ in range(50):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", host_port)
                writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
                body = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                if body:
                    break
            except ConnectionError:
                pass
            await asyncio.sleep(0.05)
        assert b"200 OK" in body and b"served-from-container" in body
    finally:
        result = await runtime.stop(svc)
    assert result.status == "stopped"
    assert work.is_dir(), "a caller-owned work dir is kept"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", host_port), timeout=1).close()


async def test_ops_in_one_pod_talk_over_loopback(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    pod = await runtime.create_pod("nosgrid-test-pod")
    try:
        server = await runtime.start(
            ContainerSpec(
                image=busybox_image, argv=("sh", "-c", "echo peer-says-hi | nc -l -p 9000"), pod=pod
            )
        )
        client = ContainerSpec(
            image=busybox_image,
            argv=(
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 9000 && exit 0;"
                " sleep 0.2; done; exit 1",
            ),
            pod=pod,
        )
        result = await runtime.run(client, deadline_s=20, on_log=sink)
        assert result.ok, (result, sink.lines)
        assert "peer-says-hi" in sink.text("stdout")
        await runtime.wait(server, deadline_s=5)
    finally:
        await runtime.remove_pod(pod)


async def test_volumes_are_created_mounted_and_removed(
    runtime: PodmanRuntime, busybox_image: str, sink: LogSink
) -> None:
    from nosgrid.node.executor import VolumeMount

    volume = await runtime.create_volume("nosgrid-test-vol")
    try:
        spec = ContainerSpec(
            image=busybox_image,
            argv=("sh", "-c", "ls -ld /models; touch /models/x && echo wrote; true"),
            volumes=(VolumeMount(volume, "/models", read_only=True),),
        )
        result = await runtime.run(spec, deadline_s=20, on_log=sink)
        assert result.ok
        assert "wrote" not in sink.text()
    finally:
        await runtime.remove_volume(volume)


async def test_python_threads_and_subprocesses_work_under_the_strict_profile(
    runtime: PodmanRuntime, python_image: str, sink: LogSink
) -> None:
    code = (
        "import threading, subprocess, multiprocessing as mp\n"
        "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout.strip())\n"
        "with mp.Pool(2) as p: print(sum(p.map(abs, [-1, -2])))\n"
    )
    spec = ContainerSpec(
        image=python_image, argv=("python3", "-u", "-c", code), memory_bytes=256 * MiB
    )
    result = await runtime.run(spec, deadline_s=30, on_log=sink)
    assert result.ok, (result, sink.lines)
    assert sink.text("stdout").splitlines() == ["thread", "sub", "3"]
