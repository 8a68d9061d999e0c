""" "Why is this node not running?": for each node of an open execution that is neither
running nor ended, what it waits for, in words an operator can act on. A read, for `get` and
`watch`; nothing here writes."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from spane_cli.states import TERMINAL_NODE, ExecutionStatus, NodeStatus
from spane_cli.store import events
from spane_cli.store.models import Event, Execution, NodeItem, NodeRun
from spane_cli.store.pool_views import pool_waits
from spane_cli.store.pools import EXECUTION
from spane_cli.timeutil import iso
from spane_cli.workflow.model import Workflow


def waiting_reasons(
    execution: Execution, workflow: Workflow, live_queues: Collection[str]
) -> dict[str, str]:
    """node id -> what it waits for, for the nodes that wait on something."""
    # Pending too: an execution whose first nodes wait for a pool slot has not started.
    if execution.status not in (
        ExecutionStatus.PENDING,
        ExecutionStatus.RUNNING,
        ExecutionStatus.PAUSED,
    ):
        return {}
    rows = {row.node_id: row for row in NodeRun.select().where(NodeRun.execution == execution.id)}
    running_items = _running_items(execution.id)
    pool_reasons = pool_waits(execution.id)
    deferred = _deferred(execution.id, rows)
    reasons: dict[str, str] = {}
    paused = execution.status == ExecutionStatus.PAUSED
    for node_id, row in rows.items():
        node = workflow.nodes.get(node_id)
        if node is None:
            continue
        reason = _reason(row, node.needs, rows, paused, node.queue, live_queues)
        if row.status == NodeStatus.WAITING:
            reason = _waiting(row, node.max_parallel, running_items.get(node_id, 0), node.queue,
                              live_queues)  # fmt: skip
        pool_reason = pool_reasons.get(node_id) or (
            pool_reasons.get(EXECUTION) if row.status == NodeStatus.QUEUED else None
        )
        if node_id in deferred and not paused:
            if row.status == NodeStatus.QUEUED and row.due_at:
                reason = deferred[node_id]
            elif row.status == NodeStatus.WAITING:
                reason = f"{reason}; {deferred[node_id]}" if reason else deferred[node_id]
        if pool_reason and not paused:
            if row.status == NodeStatus.QUEUED:
                reason = pool_reason
            elif row.status == NodeStatus.WAITING:
                reason = f"{reason}; {pool_reason}" if reason else pool_reason
        if reason:
            reasons[node_id] = reason
    return reasons


def _reason(
    row: NodeRun,
    needs: tuple[str, ...],
    rows: Mapping[str, NodeRun],
    paused: bool,
    queue: str,
    live_queues: Collection[str],
) -> str | None:
    status = row.status
    if status == NodeStatus.PENDING:
        open_parents = [p for p in needs if p in rows and rows[p].status not in TERMINAL_NODE]
        if open_parents:
            return "parents " + ", ".join(open_parents)
        return "the execution to be resumed" if paused else None
    if status == NodeStatus.QUEUED:
        if paused:
            return "the execution to be resumed"
        if queue not in live_queues:
            return f"a worker: no live worker serves queue {queue}"
        return f"a free worker on queue {queue}"
    if status == NodeStatus.RETRYING:
        return f"its retry, due at {iso(row.due_at)}" if row.due_at else "its retry"
    return None


def _waiting(
    row: NodeRun, max_parallel: int | None, running: int, queue: str, live_queues: Collection[str]
) -> str | None:
    if row.child_execution_id:
        child = Execution.get_or_none(Execution.id == row.child_execution_id)
        state = child.status if child is not None else "gone"
        return f"sub-workflow {row.child_execution_id} ({state})"
    if row.items_total is not None:
        done = f"items {row.items_done}/{row.items_total}"
        if max_parallel is not None and running >= max_parallel:
            return f"{done}, max_parallel {max_parallel} full"
        if queue not in live_queues:
            return f"{done}; no live worker serves queue {queue}"
        return done
    if row.due_at:
        return f"its delay, until {iso(row.due_at)}"
    return None


def _deferred(execution_id: str, rows: Mapping[str, NodeRun]) -> dict[str, str]:
    """node id -> the rate limit or breaker its start (or an item's) waits for, and until
    when: the last `node.deferred` event of the nodes that wait so now."""
    nodes = {n for n, row in rows.items() if row.status == NodeStatus.QUEUED and row.due_at}
    items = NodeItem.select(NodeItem.node_id).where(
        (NodeItem.execution_id == execution_id)
        & (NodeItem.status == NodeStatus.QUEUED)
        & (NodeItem.due_at.is_null(False))
    )
    nodes.update(item.node_id for item in items)
    if not nodes:
        return {}
    found: dict[str, str] = {}
    latest = (
        Event.select(Event.node_id, Event.data)
        .where(
            (Event.execution_id == execution_id)
            & (Event.type == events.NODE_DEFERRED)
            & (Event.node_id.in_(sorted(nodes)))
        )
        .order_by(Event.id)
    )
    for event in latest:
        data = event.data or {}
        if event.node_id is None:
            continue
        found[event.node_id] = f"{data.get('reason', 'a limit')} until {iso(data.get('until'))}"
    return found


def _running_items(execution_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    running = NodeItem.select(NodeItem.node_id).where(
        (NodeItem.execution_id == execution_id) & (NodeItem.status == NodeStatus.RUNNING)
    )
    for item in running:
        counts[item.node_id] = counts.get(item.node_id, 0) + 1
    return counts
