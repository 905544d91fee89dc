"""A runtime's own labels go on all it creates; ``sweep`` removes what a killed node left."""

# ruff: noqa: F811  (pytest fixtures are imported by name)

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from executor_fixtures import busybox_image, podman_names, requires_podman  # noqa: F401

from nosgrid.node.executor import ContainerSpec, PodmanRuntime

pytestmark = [pytest.mark.container, requires_podman]


async def test_sweep_removes_every_container_pod_and_volume_with_the_label(
    tmp_path: Path, busybox_image: str
) -> None:
    label = ("nosgrid.up", str(tmp_path / "up"))
    tag = uuid.uuid4().hex[:8]
    node = PodmanRuntime(tmp_path / "node", labels=dict([label]))
    other = PodmanRuntime(tmp_path / "other")
    pod = await node.create_pod(f"sweep-{tag}-pod")
    volume = await node.create_volume(f"sweep-{tag}-vol")
    orphan = await node.start(ContainerSpec(image=busybox_image, argv=("sleep", "60"),
                                            name=f"sweep-{tag}-a"))
    bystander = await other.start(ContainerSpec(image=busybox_image, argv=("sleep", "60"),
                                                name=f"sweep-{tag}-b"))
    try:
        for _ in range(100):  # `podman run` creates the container within a moment
            if orphan.name in await other.list_containers(label="=".join(label)):
                break
            await asyncio.sleep(0.05)
        assert bystander.name not in await other.list_containers(label="=".join(label))
        # the node that started it is gone (SIGKILL): a fresh runtime sweeps by the label
        removed = await PodmanRuntime(tmp_path / "up").sweep("=".join(label))
        assert {orphan.name, pod, volume} <= set(removed)  # and the pod's infra container
        assert await other.list_containers(label="=".join(label)) == []
        assert orphan.name not in podman_names(tmp_path / "other")
        assert bystander.name in podman_names(tmp_path / "other")
        assert (await asyncio.wait_for(node.wait(orphan), 20)).status != "timed_out"
        assert await PodmanRuntime(tmp_path / "up").sweep("=".join(label)) == []
    finally:
        await other.stop(bystander)
        await node.remove(orphan.name)
        await node.remove_pod(pod)
        await node.remove_volume(volume)
