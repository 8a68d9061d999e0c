"""Pure scheduling decisions: which nodes may run, which are skipped, when an execution ends.

Nothing here does I/O. The store calls `child_readiness` inside the transaction that
completes a node, so readiness is decided incrementally, one completed parent at a time;
`plan` decides the same things for a whole snapshot; the property tests hold the two to the
same answers (the reconciler does not call it yet).

Trigger rules follow Airflow's meaning (SPEC §1), with two deliberate simplifications:
- a node is only decided once every parent is terminal (Airflow fires `one_success` and
  `one_failed` early); a node's input is built from all its parents' outputs, so it cannot
  start before they are known anyway;
- a parent that failed with `continue_on_fail` counts as succeeded everywhere, and a
  cancelled parent counts as skipped.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from spane_cli.engine.states import TERMINAL_NODE, ExecutionStatus, NodeStatus
from spane_cli.workflow.model import Node, TriggerRule, Workflow

__all__ = [
    "ParentView",
    "Plan",
    "Readiness",
    "child_readiness",
    "counts_as_failed",
    "counts_as_succeeded",
    "default_output",
    "execution_result",
    "next_retry_delay",
    "node_input",
    "plan",
]


@dataclass(frozen=True)
class ParentView:
    """What a child needs to know about one parent to decide whether it may run."""

    status: NodeStatus  # terminal status of the parent (non-terminal: the child waits)
    continue_on_fail: bool  # failed + continue_on_fail counts as succeeded
    chose_child: bool | None = None  # a succeeded branch: did it choose this child?


class Readiness(StrEnum):
    READY = "ready"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    NOT_YET = "not_yet"


@dataclass(frozen=True)
class Plan:
    ready: tuple[str, ...]  # pending nodes that may be dispatched now
    skipped: tuple[str, ...]  # pending nodes to mark skipped (transitively)
    upstream_failed: tuple[str, ...]  # pending nodes to mark upstream_failed (transitively)
    finished: ExecutionStatus | None  # the execution's result once the above are applied


_NO_CHOICES: Mapping[str, Sequence[str]] = MappingProxyType({})


def counts_as_succeeded(status: NodeStatus, continue_on_fail: bool) -> bool:
    return status == NodeStatus.SUCCEEDED or (status == NodeStatus.FAILED and continue_on_fail)


def counts_as_failed(status: NodeStatus, continue_on_fail: bool) -> bool:
    # upstream_failed propagates like a failure, so that e.g. all_failed fires after a chain.
    return (status == NodeStatus.FAILED and not continue_on_fail) or (
        status == NodeStatus.UPSTREAM_FAILED
    )


def _counts_as_skipped(status: NodeStatus) -> bool:
    # A cancelled parent did not run and will not: for its children that is a skip.
    return status in (NodeStatus.SKIPPED, NodeStatus.CANCELLED)


def child_readiness(trigger: TriggerRule, parents: Mapping[str, ParentView]) -> Readiness:
    """Whether a pending node may run, given its parents (all of them, keyed by id).

    A node without parents is an entry node and is always READY.
    """
    views = list(parents.values())
    if any(view.status not in TERMINAL_NODE for view in views):
        return Readiness.NOT_YET
    # SPEC: a branch's children that were not chosen are skipped, whatever their own rule.
    if any(view.chose_child is False for view in views):
        return Readiness.SKIPPED
    if not views:
        return Readiness.READY

    total = len(views)
    succeeded = sum(counts_as_succeeded(v.status, v.continue_on_fail) for v in views)
    failed = sum(counts_as_failed(v.status, v.continue_on_fail) for v in views)
    skipped = sum(_counts_as_skipped(v.status) for v in views)

    if trigger == TriggerRule.ALL_SUCCESS:
        if succeeded == total:
            return Readiness.READY
        return Readiness.UPSTREAM_FAILED if failed else Readiness.SKIPPED
    if trigger == TriggerRule.ALL_FAILED:
        return Readiness.READY if failed == total else Readiness.SKIPPED
    if trigger == TriggerRule.ALL_DONE:
        return Readiness.READY
    if trigger == TriggerRule.ONE_SUCCESS:
        if succeeded:
            return Readiness.READY
        return Readiness.UPSTREAM_FAILED if failed == total else Readiness.SKIPPED
    if trigger == TriggerRule.ONE_FAILED:
        return Readiness.READY if failed else Readiness.SKIPPED
    if trigger == TriggerRule.NONE_FAILED:
        return Readiness.UPSTREAM_FAILED if failed else Readiness.READY
    if trigger == TriggerRule.NONE_SKIPPED:
        return Readiness.SKIPPED if skipped else Readiness.READY
    raise ValueError(f"unknown trigger rule: {trigger!r}")


def node_input(
    workflow: Workflow, node_id: str, workflow_input: Any, outputs: Mapping[str, Any]
) -> Any:
    """The input a node receives (SPEC §1, data between nodes).

    A parent without an output (failed with continue_on_fail, skipped, ...) gives None.
    """
    needs = workflow.nodes[node_id].needs
    if not needs:
        return workflow_input
    if len(needs) == 1:
        return outputs.get(needs[0])
    return {parent_id: outputs.get(parent_id) for parent_id in needs}


def execution_result(
    workflow: Workflow, statuses: Mapping[str, NodeStatus]
) -> ExecutionStatus | None:
    """The execution's final status, or None while some node can still change.

    A node missing from `statuses` counts as pending.
    """
    node_statuses = [(node, statuses.get(node_id)) for node_id, node in workflow.nodes.items()]
    if any(status not in TERMINAL_NODE for _, status in node_statuses):
        return None
    if any(
        status is not None and counts_as_failed(status, node.continue_on_fail)
        for node, status in node_statuses
    ):
        return ExecutionStatus.FAILED
    if any(status == NodeStatus.CANCELLED for _, status in node_statuses):
        return ExecutionStatus.CANCELLED
    return ExecutionStatus.SUCCEEDED


def default_output(workflow: Workflow, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """`{leaf_id: leaf_output}`; a leaf that produced nothing (skipped, failed) maps to None."""
    return {leaf_id: outputs.get(leaf_id) for leaf_id in workflow.leaf_nodes}


def next_retry_delay(
    node: Node, attempt_just_failed: int, rng: random.Random | None = None
) -> float | None:
    """Seconds before the next try, or None when the failed attempt was the last one.

    `rng` only matters for a policy with jitter; pass one to make the delay reproducible.
    """
    if attempt_just_failed >= node.retry.attempts:
        return None
    return node.retry.delay_before(attempt_just_failed + 1, rng)


def _topological_order(workflow: Workflow) -> list[str]:
    """The node ids, every parent before its children (Kahn), in O(nodes + edges).

    Nodes on a cycle (validation rejects those) are left out of the order, so they are never
    decided rather than decided wrongly.
    """
    children: dict[str, list[str]] = {node_id: [] for node_id in workflow.nodes}
    missing_parents: dict[str, int] = {}
    for node_id, node in workflow.nodes.items():
        known_parents = [p for p in node.needs if p in children]
        missing_parents[node_id] = len(known_parents)
        for parent_id in known_parents:
            children[parent_id].append(node_id)
    queue = deque(node_id for node_id, count in missing_parents.items() if count == 0)
    order: list[str] = []
    while queue:
        node_id = queue.popleft()
        order.append(node_id)
        for child_id in children[node_id]:
            missing_parents[child_id] -= 1
            if missing_parents[child_id] == 0:
                queue.append(child_id)
    return order


def _parent_views(
    workflow: Workflow,
    node: Node,
    statuses: Mapping[str, NodeStatus],
    chosen: Mapping[str, Sequence[str]],
) -> dict[str, ParentView]:
    return {
        parent_id: ParentView(
            status=statuses.get(parent_id, NodeStatus.PENDING),
            continue_on_fail=workflow.nodes[parent_id].continue_on_fail,
            chose_child=(node.id in chosen[parent_id]) if parent_id in chosen else None,
        )
        for parent_id in node.needs
    }


def plan(
    workflow: Workflow,
    statuses: Mapping[str, NodeStatus],
    chosen: Mapping[str, Sequence[str]] = _NO_CHOICES,
) -> Plan:
    """Decide every pending node of a snapshot.

    `statuses` maps node ids to their current status (a missing node counts as pending);
    `chosen` maps each succeeded branch node to the children it chose. Skips and upstream
    failures are applied transitively: walking in topological order, every parent is decided
    before its children are looked at, so one pass reaches the fixed point.
    """
    order = _topological_order(workflow)
    current: dict[str, NodeStatus] = {
        node_id: statuses.get(node_id, NodeStatus.PENDING) for node_id in workflow.nodes
    }
    decisions: dict[str, Readiness] = {}
    for node_id in order:
        if current[node_id] != NodeStatus.PENDING:
            continue
        node = workflow.nodes[node_id]
        readiness = child_readiness(node.trigger, _parent_views(workflow, node, current, chosen))
        if readiness is Readiness.NOT_YET:
            continue
        decisions[node_id] = readiness
        # Only the terminal decisions change what the children see; a READY node is still
        # running as far as its children are concerned.
        if readiness is Readiness.SKIPPED:
            current[node_id] = NodeStatus.SKIPPED
        elif readiness is Readiness.UPSTREAM_FAILED:
            current[node_id] = NodeStatus.UPSTREAM_FAILED

    def decided(readiness: Readiness) -> tuple[str, ...]:
        # File order, so that dispatch order and test expectations are stable.
        return tuple(n for n in workflow.nodes if decisions.get(n) is readiness)

    return Plan(
        ready=decided(Readiness.READY),
        skipped=decided(Readiness.SKIPPED),
        upstream_failed=decided(Readiness.UPSTREAM_FAILED),
        finished=execution_result(workflow, current),
    )
