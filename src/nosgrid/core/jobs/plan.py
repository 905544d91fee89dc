"""How a job definition runs: execution groups, and each op with ``global`` merged in.

Pure helpers for the node agent. Groups run one after another in order of first
appearance; the ops of a group start together (``depends_on`` ops wait for a dependency's
startup success; one in an earlier group has already ended, see ``waits_for``). The
plan-time checks themselves run when a definition is validated
(``nosgrid.core.jobs.graph.plan_problems``).

>>> from nosgrid.core.jobs.load import load_job_definition
>>> defn = load_job_definition('''{"version": "0.1", "type": "container",
...   "global": {"gpu": true, "env": {"A": "1"}},
...   "ops": [{"type": "container/run", "id": "x", "args": {"image": "busybox"}}]}''')
>>> [g.name for g in execution_groups(defn)]
['x']
>>> effective_op(defn, 0, "flow1").args.env
{'A': '1', 'NOSANA_ID': 'flow1'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from nosgrid.core.jobs.graph import group_order
from nosgrid.core.jobs.spec import CreateVolumeOperation, JobDefinition, RunOperation

FLOW_ID_ENV: Final = "NOSANA_ID"


@dataclass(frozen=True)
class ExecutionGroup:
    """One group of ops that start together; ``indices`` are positions in ``defn.ops``."""

    name: str
    op_ids: tuple[str, ...]
    indices: tuple[int, ...]


def execution_groups(defn: JobDefinition) -> list[ExecutionGroup]:
    """The groups in the order they run (first appearance in ``ops``).

    An op without ``execution.group`` forms its own group, named after its id.
    """
    return [
        ExecutionGroup(name, tuple(defn.ops[i].id for i in indices), tuple(indices))
        for name, indices in group_order(defn.op_nodes())
    ]


def waits_for(defn: JobDefinition, index: int) -> tuple[str, ...]:
    """The dependencies op ``index`` waits for when its group starts: those in its own group.

    A dependency in an earlier group has ended by then (groups run one after another), so
    it is satisfied and its results are final; waiting on it, or stopping when it "ends"
    (``stop_if_dependent_stops``), would be wrong.

    >>> from nosgrid.core.jobs.load import load_job_definition
    >>> defn = load_job_definition('''{"version": "0.1", "type": "container", "ops": [
    ...   {"type": "container/run", "id": "story", "args": {"image": "busybox"}},
    ...   {"type": "container/run", "id": "db", "args": {"image": "busybox"},
    ...    "execution": {"group": "work"}},
    ...   {"type": "container/run", "id": "app", "args": {"image": "busybox"},
    ...    "execution": {"group": "work", "depends_on": ["story", "db"]}}]}''')
    >>> waits_for(defn, 2)
    ('db',)
    """
    op = defn.ops[index]
    group = {o.id: o.group_name for o in defn.ops}
    return tuple(dep for dep in op.depends_on if group.get(dep) == op.group_name)


def effective_op(
    defn: JobDefinition, index: int, flow_id: str
) -> RunOperation | CreateVolumeOperation:
    """Op ``index`` with ``global`` merged in, as Nosana's node merges it.

    image: the op's, else the global one; gpu: op OR global (an op cannot switch a
    global ``true`` off); entrypoint and work_dir: the op's when set, else the global
    ones; env: ``{**global.env, **op.env, "NOSANA_ID": flow_id}``. Volume ops are
    returned unchanged.
    """
    op = defn.ops[index]
    if not isinstance(op, RunOperation):
        return op
    defaults = defn.global_
    args = op.args
    update: dict[str, Any] = {"env": {**(args.env or {}), FLOW_ID_ENV: flow_id}}
    if defaults is not None:
        update["env"] = {**(defaults.env or {}), **update["env"]}
        if not args.image and defaults.image:
            update["image"] = defaults.image
        if args.gpu or defaults.gpu:
            update["gpu"] = True
        if args.entrypoint is None and defaults.entrypoint is not None:
            update["entrypoint"] = defaults.entrypoint
        if args.work_dir is None and defaults.work_dir is not None:
            update["work_dir"] = defaults.work_dir
    return op.model_copy(update={"args": args.model_copy(update=update)})


def container_name(flow_id: str, index: int) -> str:
    """The container of op ``index``: ``<flowId>-<opIndex>`` (what ``%%ops.ID.host%%`` gives).

    >>> container_name("flow1", 2)
    'flow1-2'
    """
    return f"{flow_id}-{index}"


def volume_name(flow_id: str, name: str) -> str:
    """The real volume behind a ``container/create-volume`` op: ``<flowId>-<name>``.

    >>> volume_name("flow1", "cache")
    'flow1-cache'
    """
    return f"{flow_id}-{name}"
