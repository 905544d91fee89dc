"""nosgrid.node.executor: run job containers under Podman, hardened (see docs/isolation.md).

Example::

    from nosgrid.node.executor import ContainerSpec, PodmanRuntime

    runtime = PodmanRuntime()
    result = await runtime.run(ContainerSpec(image="localhost/nosgrid-busybox:test",
                                             argv=("echo", "hi")), deadline_s=30)
"""

from nosgrid.node.executor.args import EXECUTOR_LABEL
from nosgrid.node.executor.base import (
    ContainerHandle,
    ContainerResult,
    ContainerRuntime,
    ContainerSpec,
    ContainerSpecInvalid,
    ContainerStatus,
    ExecResult,
    LogCallback,
    LogStream,
    MiB,
    Mount,
    PodmanUnavailable,
    VolumeMount,
)
from nosgrid.node.executor.images import BUSYBOX_IMAGE, PYTHON_IMAGE, build_test_images
from nosgrid.node.executor.podman import PodmanContainer, PodmanRuntime
from nosgrid.node.executor.seccomp import strict_profile, write_strict_profile

__all__ = [
    "BUSYBOX_IMAGE",
    "EXECUTOR_LABEL",
    "PYTHON_IMAGE",
    "ContainerHandle",
    "ContainerResult",
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerSpecInvalid",
    "ContainerStatus",
    "ExecResult",
    "LogCallback",
    "LogStream",
    "MiB",
    "Mount",
    "PodmanContainer",
    "PodmanRuntime",
    "PodmanUnavailable",
    "VolumeMount",
    "build_test_images",
    "strict_profile",
    "write_strict_profile",
]
