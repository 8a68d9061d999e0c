"""Pure scheduling decisions: which nodes may run, which are skipped, when an execution ends.

Nothing here does I/O. `cascade` is the one place where what follows a node's end is
decided: which children become ready, skipped or upstream-failed (trigger rules and branch
choices, in `decide_children`), transitively down the graph. The store runs it inside the
transaction that completes a node, giving it the node rows through a small `CascadeStore`
port of SQL statements; `plan` runs the same cascade over an in-memory snapshot, for the
reconciler's repair of a stalled execution (store/repair.py). The property tests hold the
store's production path to `plan` on random graphs.

Trigger rules follow Airflow's meaning (SPEC §1), with two deliberate simplifications:
- a node is only decided once every parent is terminal (Airflow fires `one_success`,
  `one_failed`, `one_done` and `always` early); a node's input is built from all its
  parents' outputs, so it cannot start before they are known anyway;
- a parent that failed with `continue_on_fail` counts as succeeded everywhere, and a
  cancelled parent counts as skipped.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from spane_cli.states import TERMINAL_NODE, ExecutionStatus, NodeStatus
from spane_cli.workflow.model import Node, TriggerRule, Workflow


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


def _ran_to_an_end(status: NodeStatus) -> bool:
    # one_done: the parent ran to an end of its own (an upstream_failed one never ran).
    return status in (NodeStatus.SUCCEEDED, NodeStatus.FAILED)


def child_readiness(trigger: TriggerRule, parents: Mapping[str, ParentView]) -> Readiness:
    """Whether a pending node may run, given its parents (all of them, keyed by id).

    A node without parents is an entry node and is always READY. The table of every rule
    over its parents' states is in docs/trigger-rules.md.
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
    # What a rule that cannot fire leaves: upstream_failed when a parent failed, else skipped.
    not_run = Readiness.UPSTREAM_FAILED if failed else Readiness.SKIPPED

    if trigger == TriggerRule.ALL_SUCCESS:
        return Readiness.READY if succeeded == total else not_run
    if trigger == TriggerRule.ALL_FAILED:
        return Readiness.READY if failed == total else Readiness.SKIPPED
    if trigger in (TriggerRule.ALL_DONE, TriggerRule.ALWAYS):
        return Readiness.READY
    if trigger == TriggerRule.ONE_SUCCESS:
        return Readiness.READY if succeeded else not_run
    if trigger == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS:
        # As Airflow: a skipped parent is not "done"; it skips the node.
        if skipped:
            return Readiness.SKIPPED
        return Readiness.READY if succeeded else Readiness.UPSTREAM_FAILED
    if trigger == TriggerRule.ONE_FAILED:
        return Readiness.READY if failed else Readiness.SKIPPED
    if trigger == TriggerRule.ONE_DONE:
        done = any(_ran_to_an_end(v.status) for v in views)
        return Readiness.READY if done else Readiness.SKIPPED
    if trigger == TriggerRule.NONE_FAILED:
        return Readiness.UPSTREAM_FAILED if failed else Readiness.READY
    if trigger == TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
        if failed:
            return Readiness.UPSTREAM_FAILED
        return Readiness.READY if succeeded else Readiness.SKIPPED
    if trigger == TriggerRule.NONE_SKIPPED:
        return Readiness.SKIPPED if skipped else Readiness.READY
    if trigger == TriggerRule.ALL_SKIPPED:
        return Readiness.READY if skipped == total else Readiness.SKIPPED
    raise ValueError(f"unknown trigger rule: {trigger!r}")


def is_exit_entry(workflow: Workflow, node_id: str) -> bool:
    """An exit handler that waits for the main graph itself (its `needs` are every node of the
    main graph), rather than for other exit handlers."""
    node = workflow.nodes[node_id]
    return node.on_exit and not any(workflow.nodes[p].on_exit for p in node.needs)


def node_input(
    workflow: Workflow, node_id: str, workflow_input: Any, outputs: Mapping[str, Any]
) -> Any:
    """The input a node receives (SPEC §1, data between nodes).

    A parent without an output (failed with continue_on_fail, skipped, ...) gives None. An
    exit handler that waits for the main graph receives `{leaf_id: output}` of its leaves.
    """
    needs = workflow.nodes[node_id].needs
    if not needs:
        return workflow_input
    if is_exit_entry(workflow, node_id):
        return default_output(workflow, outputs)
    if len(needs) == 1:
        return outputs.get(needs[0])
    return {parent_id: outputs.get(parent_id) for parent_id in needs}


def main_result(workflow: Workflow, statuses: Mapping[str, NodeStatus]) -> ExecutionStatus | None:
    """What the main graph (every node but the exit handlers) decided, or None while one of
    its nodes can still change. A node missing from `statuses` counts as pending."""
    node_statuses = [
        (node, statuses.get(node_id))
        for node_id, node in workflow.nodes.items()
        if not node.on_exit
    ]
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


def execution_result(
    workflow: Workflow, statuses: Mapping[str, NodeStatus]
) -> ExecutionStatus | None:
    """The execution's final status, or None while some node can still change.

    The main graph decides it; a failed exit handler fails an execution whose main graph
    succeeded (as in Argo). A node missing from `statuses` counts as pending.
    """
    result = main_result(workflow, statuses)
    if result is None:
        return None
    exit_statuses = [(workflow.nodes[n], statuses.get(n)) for n in workflow.exit_nodes]
    if any(status not in TERMINAL_NODE for _, status in exit_statuses):
        return None
    if result == ExecutionStatus.SUCCEEDED and any(
        status is not None and counts_as_failed(status, node.continue_on_fail)
        for node, status in exit_statuses
    ):
        return ExecutionStatus.FAILED
    return result


def workflow_status(workflow: Workflow, statuses: Mapping[str, NodeStatus]) -> str:
    """`workflow.status` in templates: the main graph's result once decided (what an exit
    handler sees), before that `failed` as soon as one of its nodes failed, else `running`."""
    result = main_result(workflow, statuses)
    if result is not None:
        return str(result)
    failed = any(
        counts_as_failed(status, workflow.nodes[node_id].continue_on_fail)
        for node_id, status in statuses.items()
        if node_id in workflow.nodes and not workflow.nodes[node_id].on_exit
    )
    return str(ExecutionStatus.FAILED if failed else ExecutionStatus.RUNNING)


def fail_fast_stops(workflow: Workflow, node_id: str, status: NodeStatus) -> bool:
    """Whether `node_id` ending in `status` stops the main graph (the workflow's `fail_fast`):
    a node of the main graph that failed for good and does not continue on failure."""
    node = workflow.nodes[node_id]
    return (
        workflow.fail_fast
        and not node.on_exit
        and status == NodeStatus.FAILED
        and not node.continue_on_fail
    )


def default_output(workflow: Workflow, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """`{leaf_id: leaf_output}`; a leaf that produced nothing (skipped, failed) maps to None."""
    return {leaf_id: outputs.get(leaf_id) for leaf_id in workflow.leaf_nodes}


def next_retry_delay(
    node: Node,
    attempt_just_failed: int,
    rng: random.Random | None = None,
    failure: Mapping[str, Any] | None = None,
) -> float | None:
    """Seconds before the next try, or None when the failed attempt was the last one, or when
    the node's `retry.when` is false for `failure` (see `retry_scope`).

    `rng` only matters for a policy with jitter; pass one to make the delay reproducible.
    """
    if attempt_just_failed >= node.retry.attempts:
        return None
    if node.retry.when is not None and not retry_wanted(node, failure or {}):
        return None
    return node.retry.delay_before(attempt_just_failed + 1, rng)


def retry_scope(
    attempt: int,
    error: str | None,
    exit_code: int | None = None,
    http_status: int | None = None,
) -> dict[str, Any]:
    """The names `retry.when` sees (docs/exit-handlers-and-retries.md)."""
    return {
        "attempt": attempt,
        "error": error or "",
        "exit_code": exit_code,
        "status": http_status,
    }


def retry_wanted(node: Node, failure: Mapping[str, Any]) -> bool:
    """`retry.when` over one failure. An expression that cannot be computed (a comparison of
    None with a number, say) means no retry: the failure is not one the author asked for."""
    from spane_cli.workflow.expressions import ExpressionError, evaluate
    from spane_cli.workflow.validate import bare_expression

    assert node.retry.when is not None
    try:
        return bool(evaluate(bare_expression(node.retry.when), failure))
    except ExpressionError:
        return False


@dataclass(frozen=True)
class ParentState:
    """A terminal node as its children see it: its status, and for a branch the children it
    chose (None for any other type)."""

    status: NodeStatus
    chosen: tuple[str, ...] | None = None


@dataclass
class Decisions:
    """What becomes of children whose parents have all ended, in the order they were given."""

    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    upstream_failed: list[str] = field(default_factory=list)


def branch_choice(
    workflow: Workflow, parent_id: str, state: ParentState, child_id: str
) -> bool | None:
    """Whether a branch parent chose `child_id`; None when the parent is not a branch.

    As in Airflow, a child the branch did not name still counts as chosen when it is
    downstream of a child it named (`branch -> join` beside `branch -> left -> join`): only
    the children off every chosen path are skipped. A branch that failed (and continued, with
    continue_on_fail) chose nothing, so its children skip. Exit handlers are not children.
    """
    parent = workflow.nodes[parent_id]
    if parent.type != "branch" or workflow.nodes[child_id].on_exit:
        return None
    if state.status == NodeStatus.SUCCEEDED:
        chosen = [c for c in (state.chosen or ()) if c in workflow.nodes]
        return child_id in chosen or any(child_id in workflow.descendants(c) for c in chosen)
    return False if state.status == NodeStatus.FAILED else None


def decide_children(
    workflow: Workflow, children: Sequence[str], parents: Mapping[str, ParentState]
) -> Decisions:
    """Decide each of `children`, whose parents are all in `parents` (and terminal).

    Children with the same parents and trigger rule get the same answer unless a parent is a
    branch (which chooses per child), so a fan-out of 10,000 children is decided once.
    """
    decisions = Decisions()
    by_rule: dict[tuple[TriggerRule, tuple[str, ...]], Readiness] = {}
    for child_id in children:
        node = workflow.nodes[child_id]
        key = (node.trigger, node.needs)
        readiness = by_rule.get(key)
        if readiness is None:
            views = {
                parent_id: ParentView(
                    status=parents[parent_id].status,
                    continue_on_fail=workflow.nodes[parent_id].continue_on_fail,
                    chose_child=branch_choice(workflow, parent_id, parents[parent_id], child_id),
                )
                for parent_id in node.needs
            }
            readiness = child_readiness(node.trigger, views)
            if all(workflow.nodes[p].type != "branch" for p in node.needs):
                by_rule[key] = readiness
        if readiness is Readiness.READY:
            decisions.ready.append(child_id)
        elif readiness is Readiness.SKIPPED:
            decisions.skipped.append(child_id)
        elif readiness is Readiness.UPSTREAM_FAILED:
            decisions.upstream_failed.append(child_id)
    return decisions


class CascadeStore(Protocol):
    """What `cascade` needs of the node states it walks: the store gives it SQL, `plan` a dict."""

    def count_down(self, decrements: Mapping[str, int]) -> list[str]:
        """Lower each child's count of unfinished parents; return those now at zero."""
        ...

    def parent_states(self, node_ids: Sequence[str]) -> Mapping[str, ParentState]:
        """The current state of these (terminal) nodes."""
        ...

    def settle(self, status: NodeStatus, node_ids: Sequence[str]) -> list[str]:
        """Move these pending nodes to a terminal `status`; return the ones that moved."""
        ...


@dataclass
class CascadeResult:
    ready: list[str]  # children that may run now, in the order they were decided
    ended: int  # nodes that became terminal: the finished ones and every one settled


def cascade(
    workflow: Workflow,
    children_of: Mapping[str, Sequence[str]],
    finished: Mapping[str, ParentState],
    nodes: CascadeStore,
) -> CascadeResult:
    """Everything that follows from `finished` (nodes that just became terminal): their
    children whose parents have all ended are decided, skipped and upstream-failed ones are
    settled and their own children decided in turn, down the graph, until nothing changes.

    A child whose parents all ended in this very cascade (every child of a fan-out root,
    every link of a chain) is decided without a count-down.
    """
    known: dict[str, ParentState] = dict(finished)
    frontier = list(finished)
    ended = 0
    ready: list[str] = []
    while frontier:
        ended += len(frontier)
        counts: dict[str, int] = {}
        for node_id in frontier:
            for child_id in children_of[node_id]:
                counts[child_id] = counts.get(child_id, 0) + 1
        frontier = []
        unblocked = sorted(c for c, n in counts.items() if n == len(workflow.nodes[c].needs))
        unblocked += nodes.count_down(
            {c: n for c, n in counts.items() if n != len(workflow.nodes[c].needs)}
        )
        if not unblocked:
            continue
        unblocked.sort()
        unknown = sorted({p for c in unblocked for p in workflow.nodes[c].needs} - set(known))
        if unknown:
            known.update(nodes.parent_states(unknown))
        decisions = decide_children(workflow, unblocked, known)
        ready += decisions.ready
        for status, node_ids in (
            (NodeStatus.SKIPPED, decisions.skipped),
            (NodeStatus.UPSTREAM_FAILED, decisions.upstream_failed),
        ):
            if not node_ids:
                continue
            for node_id in nodes.settle(status, node_ids):
                known[node_id] = ParentState(status)
                frontier.append(node_id)
    return CascadeResult(ready, ended)


class _SnapshotNodes:
    """`CascadeStore` over an in-memory snapshot, for `plan`."""

    def __init__(
        self,
        workflow: Workflow,
        children_of: Mapping[str, Sequence[str]],
        current: dict[str, NodeStatus],
        chosen: Mapping[str, Sequence[str]],
    ) -> None:
        self.children_of = children_of
        self.current = current
        self.chosen = chosen
        self.waiting_on = {
            node_id: sum(current[p] not in TERMINAL_NODE for p in node.needs)
            for node_id, node in workflow.nodes.items()
        }

    def count_down(self, decrements: Mapping[str, int]) -> list[str]:
        # The snapshot's counts already leave out every terminal parent.
        current, waiting_on = self.current, self.waiting_on
        return [c for c in decrements if current[c] == NodeStatus.PENDING and not waiting_on[c]]

    def parent_states(self, node_ids: Sequence[str]) -> Mapping[str, ParentState]:
        return {n: self.state(n) for n in node_ids}

    def state(self, node_id: str) -> ParentState:
        chosen = self.chosen.get(node_id)
        return ParentState(self.current[node_id], tuple(chosen) if chosen is not None else None)

    def settle(self, status: NodeStatus, node_ids: Sequence[str]) -> list[str]:
        moved = [n for n in node_ids if self.current[n] == NodeStatus.PENDING]
        for node_id in moved:
            self.current[node_id] = status
            for child_id in self.children_of[node_id]:
                self.waiting_on[child_id] -= 1
        return moved


def plan(
    workflow: Workflow,
    statuses: Mapping[str, NodeStatus],
    chosen: Mapping[str, Sequence[str]] = _NO_CHOICES,
) -> Plan:
    """Decide every pending node of a snapshot, with the cascade production runs.

    `statuses` maps node ids to their current status (a missing node counts as pending);
    `chosen` maps each succeeded branch node to the children it chose. The snapshot's
    terminal nodes are cascaded from as if they had just finished, and pending entry nodes
    are ready.
    """
    current = {node_id: statuses.get(node_id, NodeStatus.PENDING) for node_id in workflow.nodes}
    if workflow.fail_fast and any(
        fail_fast_stops(workflow, n, status) for n, status in current.items()
    ):
        # As the failure's own transaction does: the rest of the main graph never starts.
        for node_id, status in current.items():
            if status == NodeStatus.PENDING and not workflow.nodes[node_id].on_exit:
                current[node_id] = NodeStatus.SKIPPED
    children_of: dict[str, list[str]] = {node_id: [] for node_id in workflow.nodes}
    for node in workflow.nodes.values():
        for parent_id in node.needs:
            children_of[parent_id].append(node.id)
    nodes = _SnapshotNodes(workflow, children_of, current, chosen)
    terminal = {n: nodes.state(n) for n in workflow.nodes if current[n] in TERMINAL_NODE}
    # Cascading from terminal parents touches only pending children (the others have been
    # decided before): the children of terminal nodes that are not pending are left alone.
    result = cascade(workflow, children_of, terminal, nodes)
    was_pending = {n for n in workflow.nodes if statuses.get(n, NodeStatus.PENDING) == "pending"}
    ready = {n for n in result.ready if n in was_pending}
    ready.update(n for n in was_pending if not workflow.nodes[n].needs)
    ready = {n for n in ready if current[n] == NodeStatus.PENDING}

    def in_file_order(wanted: set[str]) -> tuple[str, ...]:
        return tuple(n for n in workflow.nodes if n in wanted)

    settled = {n for n in workflow.nodes if current[n] != statuses.get(n, NodeStatus.PENDING)}
    return Plan(
        ready=in_file_order(ready),
        skipped=in_file_order({n for n in settled if current[n] == NodeStatus.SKIPPED}),
        upstream_failed=in_file_order(
            {n for n in settled if current[n] == NodeStatus.UPSTREAM_FAILED}
        ),
        finished=execution_result(workflow, current),
    )


def foreach_choice(node: Node, item_outputs: Sequence[Any]) -> list[str] | None:
    """What a `branch` node with `foreach` chose: every child one of its items chose, in the
    order first chosen. None for any other node type."""
    if node.type != "branch":
        return None
    chosen: dict[str, None] = {}
    for output in item_outputs:
        if isinstance(output, Mapping):
            chosen.update(dict.fromkeys(output.get("chosen") or ()))
    return list(chosen)
