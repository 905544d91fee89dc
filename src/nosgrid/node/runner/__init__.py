"""nosgrid.node.runner: run a whole job definition (groups, depends_on, services) on Podman.

Example::

    from nosgrid.node.runner import JobRunner

    outcome = await JobRunner(runtime, work_root).run("job1", defn, timeout_s=600)
"""

from nosgrid.node.runner.job import JobLogSink, JobRunner
from nosgrid.node.runner.outcome import JobOutcome, OpOutcome, OutputFile
from nosgrid.node.runner.plan import (
    POD_HOST,
    PortPlan,
    RunnerLimits,
    container_spec,
    exposed_ports,
    flow_id,
    op_host,
    pod_name,
    restart_limit,
)

__all__ = [
    "POD_HOST",
    "JobLogSink",
    "JobOutcome",
    "JobRunner",
    "OpOutcome",
    "OutputFile",
    "PortPlan",
    "RunnerLimits",
    "container_spec",
    "exposed_ports",
    "flow_id",
    "op_host",
    "pod_name",
    "restart_limit",
]
