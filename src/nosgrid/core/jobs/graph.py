"""The op graph of a job: plan-time checks and execution groups, on plain ids (no models).

Rejected: duplicate ids, an op that depends on itself or on an unknown id, a dependency
in a group that runs later, and cycles (which would wait forever). Groups run one after
another, so a dependency on an op of an earlier group is already satisfied when the
dependent's group starts: Nosana's node rejects it, but Nosana's own documentation
builds pipelines that way (a story op, a media group reading its results, a download op
that needs the media ops), and nosgrid runs them.

>>> nodes = [OpNode("b", None, ("a",)), OpNode("a", None, ())]
>>> plan_problems(nodes)
[('ops[0].execution.depends_on[0]', "op 'b' depends on 'a', which is in group 'a', which runs after group 'b'; a dependency must be in the same group or an earlier one")]
>>> plan_problems([OpNode("a", None, ()), OpNode("b", None, ("a",))])
[]
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OpNode:
    """One op as the plan sees it: its id, its ``execution.group`` and ``depends_on``."""

    id: str
    group: str | None
    depends_on: tuple[str, ...]

    @property
    def group_name(self) -> str:
        """The group the op runs in: ``execution.group``, or its own id when absent."""
        return self.group if self.group is not None else self.id


def plan_problems(nodes: Sequence[OpNode]) -> list[tuple[str, str]]:
    """Every plan error as ``(path, message)``, in op order; empty when the plan is sound.

    >>> plan_problems([OpNode("a", "g", ("a",))])
    [('ops[0].execution.depends_on[0]', "op 'a' depends on itself")]
    """
    problems: list[tuple[str, str]] = []
    first: dict[str, int] = {}
    rank = {name: k for k, (name, _) in enumerate(group_order(nodes))}
    for i, node in enumerate(nodes):
        if node.id in first:
            problems.append(
                (
                    f"ops[{i}].id",
                    f"duplicate op id {node.id!r} (also used by ops[{first[node.id]}])",
                )
            )
        else:
            first[node.id] = i
    for i, node in enumerate(nodes):
        for k, dep in enumerate(node.depends_on):
            path = f"ops[{i}].execution.depends_on[{k}]"
            if dep == node.id:
                problems.append((path, f"op {node.id!r} depends on itself"))
            elif dep not in first:
                problems.append((path, f"op {node.id!r} depends on unknown op {dep!r}"))
            elif rank[other := nodes[first[dep]].group_name] > rank[node.group_name]:
                problems.append(
                    (
                        path,
                        f"op {node.id!r} depends on {dep!r}, which is in group {other!r}, "
                        f"which runs after group {node.group_name!r}; a dependency must be "
                        "in the same group or an earlier one",
                    )
                )
    if not problems:
        problems.extend(_cycles(nodes))
    return problems


def _cycles(nodes: Sequence[OpNode]) -> list[tuple[str, str]]:
    index = {node.id: i for i, node in enumerate(nodes)}
    state = [0] * len(nodes)  # 0 unseen, 1 on the stack, 2 done
    found: list[tuple[str, str]] = []
    for root in range(len(nodes)):
        if state[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path: list[int] = [root]
        state[root] = 1
        while stack:
            at, k = stack[-1]
            deps = nodes[at].depends_on
            if k == len(deps):
                stack.pop()
                path.pop()
                state[at] = 2
                continue
            stack[-1] = (at, k + 1)
            nxt = index[deps[k]]
            if state[nxt] == 1:
                loop = path[path.index(nxt) :]
                start = min(loop)
                ids = [nodes[j].id for j in loop] + [nodes[nxt].id]
                found.append(
                    (
                        f"ops[{start}].execution.depends_on",
                        "dependency cycle: " + " -> ".join(repr(x) for x in ids),
                    )
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, 0))
                path.append(nxt)
    return found


def group_order(nodes: Sequence[OpNode]) -> list[tuple[str, list[int]]]:
    """Groups in order of first appearance, each with the indices of its ops in op order.

    Groups run one after another; the ops of one group start together (an op with
    ``depends_on`` waits for a dependency to report startup success).

    >>> group_order([OpNode("a", "g", ()), OpNode("b", None, ()), OpNode("c", "g", ())])
    [('g', [0, 2]), ('b', [1])]
    """
    groups: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        groups.setdefault(node.group_name, []).append(i)
    return list(groups.items())
