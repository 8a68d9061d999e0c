"""Time-driven transitions, run by the reconciler: delays that are over complete, retries that
are due go back on a queue (nodes and foreach items), executions past their `timeout:` fail."""

from __future__ import annotations

from collections.abc import Sequence

from spane_cli.states import ACTIVE_EXECUTION, OPEN_EXECUTION, ExecutionStatus, NodeStatus
from spane_cli.store import complete, items, lifecycle
from spane_cli.store.models import Execution, NodeRun, Outbox
from spane_cli.store.records import Dispatch, Report
from spane_cli.store.tx import Caches, transaction
from spane_cli.workflow.durations import format_duration


def wake_due(caches: Caches, now: float, limit: int = 500) -> list[Dispatch]:
    """Delays that are over complete; retries that are due go back on a queue. One
    transaction per node, so one bad row cannot hold back the others."""
    due = list(
        NodeRun.select(NodeRun.execution, NodeRun.node_id, NodeRun.attempt, NodeRun.status)
        .join(Execution)
        .where(
            (NodeRun.status.in_([NodeStatus.WAITING, NodeStatus.RETRYING]))
            & (NodeRun.due_at <= now)
            & (NodeRun.child_execution_id.is_null())
            & (Execution.status.in_(list(ACTIVE_EXECUTION)))
        )
        .limit(limit)
    )
    dispatches: list[Dispatch] = []
    for row in due:
        with transaction(caches, now) as tx:
            tx.lock_executions([row.execution_id])
            if row.status == NodeStatus.WAITING:
                current = NodeRun.get_or_none(
                    (NodeRun.execution == row.execution_id) & (NodeRun.node_id == row.node_id)
                )
                if current is not None and current.status == NodeStatus.WAITING:
                    over = Report("succeeded", output=current.output)
                    complete.record(
                        tx, row.execution_id, row.node_id, row.attempt, NodeStatus.WAITING, over
                    )
                    complete.report_ended_children(tx)
            else:
                info = tx.info(row.execution_id)
                moved = (
                    NodeRun.update(status=NodeStatus.QUEUED)
                    .where(
                        (NodeRun.execution == row.execution_id)
                        & (NodeRun.node_id == row.node_id)
                        & (NodeRun.status == NodeStatus.RETRYING)
                        & (NodeRun.attempt == row.attempt)
                    )
                    .execute()
                )
                if moved and info is not None:
                    # Back to retrying for the guarded requeue below (it leaves retrying).
                    NodeRun.update(status=NodeStatus.RETRYING).where(
                        (NodeRun.execution == row.execution_id) & (NodeRun.node_id == row.node_id)
                    ).execute()
                    node = tx.version(info.version_id).workflow.nodes[row.node_id]
                    complete.requeue(tx, row.execution_id, node, row.attempt + 1)
        dispatches += tx.dispatches
    return dispatches


def wake_due_items(caches: Caches, now: float) -> list[Dispatch]:
    """Item retries whose wait is over go back on a queue; delay items that are over
    succeed (the last of them completes its node)."""
    # A plain read: most ticks find nothing, and must not pay for a write transaction.
    due = items.due_items(caches.database, now)
    dispatches: list[Dispatch] = []
    for execution_id, node_id, index, attempt, status in due:
        with transaction(caches, now) as tx:
            tx.lock_executions([execution_id])
            if status == NodeStatus.RETRYING:
                items.requeue_item(tx, execution_id, node_id, index, attempt)
            else:
                node_report = items.wait_over(tx, execution_id, node_id, index, attempt)
                if node_report is not None:
                    complete.record_items_report(tx, execution_id, node_id, node_report)
                complete.report_ended_children(tx)
        dispatches += tx.dispatches
    return dispatches


def expire_timeouts(caches: Caches, now: float) -> list[str]:
    """Executions past their whole-execution timeout fail, and so do the nodes they were
    running (Argo's "exceeded its deadline"); returns their ids."""
    expired = [
        (row.id, float(row.timeout_at or now) - row.created_at)
        for row in Execution.select(Execution.id, Execution.timeout_at, Execution.created_at).where(
            (Execution.status.in_(list(OPEN_EXECUTION)))
            & (Execution.timeout_at.is_null(False))
            & (Execution.timeout_at <= now)
        )
    ]
    for execution_id, limit in expired:
        error = f"timed out after {format_duration(max(limit, 0.0))}: exceeded its deadline"
        lifecycle.end_execution(
            caches,
            execution_id,
            ExecutionStatus.FAILED,
            f"execution {error}",
            now,
            node_error=f"the execution {error}",
        )
    return [execution_id for execution_id, _ in expired]


def restart_grace(dispatches: Sequence[Dispatch], now: float) -> None:
    """Re-sent outbox rows start their grace period again, so each is sent once per period."""
    for dispatch in dispatches:
        same_item = Outbox.item.is_null() if dispatch.item is None else Outbox.item == dispatch.item
        Outbox.update(created_at=now).where(
            (Outbox.execution_id == dispatch.execution_id)
            & (Outbox.node_id == dispatch.node_id)
            & same_item
        ).execute()
