"""Operator control of a whole execution: cancel, pause, resume, and the end an execution
timeout forces. Each takes the execution row first (lock order, tx.py)."""

from __future__ import annotations

from spane_cli.errors import OperationFailed
from spane_cli.states import (
    ACTIVE_EXECUTION,
    OPEN_EXECUTION,
    TERMINAL_NODE,
    ExecutionStatus,
    NodeStatus,
)
from spane_cli.store import complete, events, finish, pools
from spane_cli.store.models import Execution, NodeRun, Outbox
from spane_cli.store.records import Dispatch
from spane_cli.store.tx import Caches, transaction

# Nodes and items an execution's deadline fails: all that had been dispatched.
_DISPATCHED = (NodeStatus.QUEUED, NodeStatus.RUNNING, NodeStatus.WAITING, NodeStatus.RETRYING)


def end_execution(
    caches: Caches,
    execution_id: str,
    status: ExecutionStatus,
    error: str | None,
    now: float,
    node_error: str | None = None,
) -> bool:
    """Open -> `status`; then its open sub-workflow executions, one transaction each. False
    when it had already ended. Unfinished nodes are cancelled. With `node_error` (a
    deadline), as Argo fails the steps of a workflow past its deadline, those dispatched
    (queued, running, waiting, retrying) fail with it instead and those still pending become
    upstream_failed: `spane retry` then runs them again like any failure."""
    with transaction(caches, now) as tx:
        tx.lock_executions([execution_id])
        changed = (
            Execution.update(status=status, error=error, finished_at=now)
            .where((Execution.id == execution_id) & (Execution.status.in_(list(OPEN_EXECUTION))))
            .execute()
        )
        if changed != 1:
            return False
        open_nodes = [
            (row.node_id, NodeStatus(row.status), row.attempt)
            for row in NodeRun.select(NodeRun.node_id, NodeRun.status, NodeRun.attempt).where(
                (NodeRun.execution == execution_id)
                & (NodeRun.status.not_in([str(s) for s in TERMINAL_NODE]))
            )
        ]
        ends: dict[str, NodeStatus] = {}
        for node_id, node_status, _ in open_nodes:
            if node_error is None:
                ends[node_id] = NodeStatus.CANCELLED
            elif node_status in _DISPATCHED:
                ends[node_id] = NodeStatus.FAILED
            else:
                ends[node_id] = NodeStatus.UPSTREAM_FAILED
        for end in set(ends.values()):
            NodeRun.update(
                status=end,
                finished_at=now,
                due_at=None,
                **({"error": node_error} if end == NodeStatus.FAILED else {}),
            ).where(
                (NodeRun.execution == execution_id)
                & (NodeRun.node_id.in_([n for n, e in ends.items() if e == end]))
            ).execute()
        if node_error is not None:
            tx.run(
                "UPDATE node_item SET status = 'failed', error = ?, finished_at = ?,"
                " due_at = NULL WHERE execution_id = ?"
                " AND status IN ('queued', 'running', 'waiting', 'retrying')",
                (node_error, now, execution_id),
            )
        Outbox.delete().where(Outbox.execution_id == execution_id).execute()
        pools.release_execution(tx, execution_id)  # its nodes' slots, its max_active one
        tx.run(
            "UPDATE node_item SET status = 'cancelled', finished_at = ?, due_at = NULL"
            " WHERE execution_id = ?"
            " AND status IN ('pending', 'queued', 'running', 'waiting', 'retrying')",
            (now, execution_id),
        )
        attempts = {n: attempt for n, _, attempt in open_nodes}
        for node_id, end in ends.items():
            if end == NodeStatus.FAILED:
                data = {"attempt": attempts[node_id], "error": node_error}
                tx.event(execution_id, node_id, events.NODE_FAILED, data)
            elif end == NodeStatus.UPSTREAM_FAILED:
                tx.event(execution_id, node_id, events.NODE_UPSTREAM_FAILED)
            else:
                tx.event(execution_id, node_id, events.NODE_CANCELLED)
        event_type = (
            events.EXECUTION_CANCELLED
            if status == ExecutionStatus.CANCELLED
            else events.EXECUTION_FAILED
        )
        tx.event(execution_id, None, event_type, {"error": error} if error else None)
        children = [
            row.id
            for row in Execution.select(Execution.id).where(
                (Execution.parent_id == execution_id) & (Execution.status.in_(list(OPEN_EXECUTION)))
            )
        ]
        # A sub-workflow that ends this way still settles its parent node (which fails); when
        # the parent itself is being cancelled, its node is no longer waiting and hears nothing.
        finish.note_ended_child(tx, Execution.get_by_id(execution_id), status, None, error)
        complete.report_ended_children(tx)
    for child_id in children:
        end_execution(caches, child_id, status, error, now, node_error)
    return True


def set_paused(caches: Caches, execution_id: str, paused: bool, now: float) -> list[Dispatch]:
    """Pause stops new claims; resume re-dispatches what is queued."""
    with transaction(caches, now) as tx:
        tx.lock_executions([execution_id])
        if paused:
            changed = (
                Execution.update(status=ExecutionStatus.PAUSED)
                .where(
                    (Execution.id == execution_id) & (Execution.status.in_(list(ACTIVE_EXECUTION)))
                )
                .execute()
            )
            if changed != 1:
                raise OperationFailed(f"execution {execution_id} is not running")
            tx.event(execution_id, None, events.EXECUTION_PAUSED)
            return []
        changed = (
            Execution.update(status=ExecutionStatus.RUNNING)
            .where((Execution.id == execution_id) & (Execution.status == ExecutionStatus.PAUSED))
            .execute()
        )
        if changed != 1:
            raise OperationFailed(f"execution {execution_id} is not paused")
        tx.event(execution_id, None, events.EXECUTION_RESUMED)
        rows = Outbox.select().where(Outbox.execution_id == execution_id)
        return caches.with_priorities(
            [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue, r.item) for r in rows]
        )
