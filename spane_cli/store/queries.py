"""The read side: what the CLI and the engine look up, as functions over the models, so no
caller above the store builds a query of its own. Nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence

from spane_cli.errors import NotFound
from spane_cli.states import ACTIVE_EXECUTION, NodeStatus
from spane_cli.store.models import Execution, NodeRun, Outbox
from spane_cli.store.records import Dispatch


def require_execution(execution_id: str) -> Execution:
    execution = Execution.get_or_none(Execution.id == execution_id)
    if execution is None:
        raise NotFound(f"no execution {execution_id!r}")
    return execution


def execution_status(execution_id: str) -> str | None:
    """The execution's status now, or None when there is no such execution."""
    row = Execution.select(Execution.status).where(Execution.id == execution_id).first()
    return None if row is None else str(row.status)


def node_state(execution_id: str, node_id: str) -> dict[str, object] | None:
    """`{status, output, error}` of one node, as templates see `nodes.<id>`."""
    row = (
        NodeRun.select(NodeRun.status, NodeRun.output, NodeRun.error)
        .where((NodeRun.execution == execution_id) & (NodeRun.node_id == node_id))
        .first()
    )
    if row is None:
        return None
    return {"status": row.status, "output": row.output, "error": row.error}


def pending_dispatches(older_than: float, limit: int = 1000) -> list[Dispatch]:
    """Outbox rows older than `older_than` (epoch): dispatch intent not yet claimed."""
    rows = (
        Outbox.select()
        .join(Execution, on=(Outbox.execution_id == Execution.id))
        .where((Outbox.created_at <= older_than) & (Execution.status.in_(list(ACTIVE_EXECUTION))))
        .order_by(Outbox.id)
        .limit(limit)
    )
    return [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue, r.item) for r in rows]


def work_left(queues: Sequence[str], due_before: float) -> bool:
    """Whether a node on `queues` of an active execution is queued, or is a retry or delay
    due before `due_before`."""
    return bool(
        NodeRun.select()
        .join(Execution)
        .where(
            (Execution.status.in_(list(ACTIVE_EXECUTION)))
            & (NodeRun.queue.in_(list(queues)))
            & (
                (NodeRun.status == NodeStatus.QUEUED)
                | (
                    NodeRun.status.in_([NodeStatus.RETRYING, NodeStatus.WAITING])
                    & (NodeRun.due_at <= due_before)
                    & NodeRun.child_execution_id.is_null()
                )
            )
        )
        .exists()
    )
