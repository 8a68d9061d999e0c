"""Recovering work whose worker is gone (kill -9, a lost host): a running node or item whose
worker stopped beating goes back on its queue without using an attempt; after MAX_LOST losses
in a row it fails with `worker lost`."""

from __future__ import annotations

from collections.abc import Collection

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import complete, events, items
from spane_cli.store.models import Execution, NodeRun
from spane_cli.store.records import MAX_LOST, Dispatch, Report
from spane_cli.store.tx import Caches, transaction

_LOST_ERROR = f"worker lost\nits worker died {MAX_LOST} times in a row"


def recover_lost_nodes(
    caches: Caches,
    alive: Collection[str],
    older_than: float,
    now: float,
    worker: str | None = None,
) -> list[Dispatch]:
    """Nodes running since before `older_than` on a worker not in `alive` (only on `worker`,
    when given: a supervisor releasing the nodes of a child it saw die)."""
    condition = (
        (NodeRun.status == NodeStatus.RUNNING)
        & (NodeRun.started_at < older_than)
        & (Execution.status.in_([ExecutionStatus.RUNNING, ExecutionStatus.PAUSED]))
    )
    if worker is not None:
        condition &= NodeRun.worker == worker
    running = list(
        NodeRun.select(
            NodeRun.execution, NodeRun.node_id, NodeRun.attempt, NodeRun.worker, NodeRun.lost_count
        )
        .join(Execution)
        .where(condition)
    )
    dispatches: list[Dispatch] = []
    for row in running:
        if row.worker in alive:
            continue
        with transaction(caches, now) as tx:
            tx.lock_executions([row.execution_id])
            if row.lost_count + 1 >= MAX_LOST:
                complete.record(
                    tx, row.execution_id, row.node_id, row.attempt, NodeStatus.RUNNING,
                    Report("failed", error=_LOST_ERROR), use_attempt=False,
                )  # fmt: skip
                complete.report_ended_children(tx)
            else:
                moved = (
                    NodeRun.update(
                        status=NodeStatus.QUEUED,
                        lost_count=NodeRun.lost_count + 1,
                        queued_at=now,
                        worker=None,
                    )
                    .where(
                        (NodeRun.execution == row.execution_id)
                        & (NodeRun.node_id == row.node_id)
                        & (NodeRun.attempt == row.attempt)
                        & (NodeRun.status == NodeStatus.RUNNING)
                    )
                    .execute()
                )
                info = tx.info(row.execution_id)
                if moved == 1 and info is not None:
                    queue = tx.version(info.version_id).workflow.nodes[row.node_id].queue
                    tx.enqueue([Dispatch(row.execution_id, row.node_id, row.attempt, queue)])
                    tx.event(
                        row.execution_id,
                        row.node_id,
                        events.NODE_LOST,
                        {"worker": row.worker, "attempt": row.attempt},
                    )
        dispatches += tx.dispatches
    return dispatches


def recover_lost_items(
    caches: Caches,
    alive: Collection[str],
    older_than: float,
    now: float,
    worker: str | None = None,
) -> list[Dispatch]:
    """Foreach items running since before `older_than` on a worker not in `alive` (only on
    `worker`, when given)."""
    running = items.running_items(caches.database, older_than)  # a plain read
    dispatches: list[Dispatch] = []
    for execution_id, node_id, index, attempt, owner, lost in running:
        if owner in alive or (worker is not None and owner != worker):
            continue
        worker_lost = owner
        with transaction(caches, now) as tx:
            ended = items.lose_item(tx, execution_id, node_id, index, attempt, worker_lost, lost)
            if ended is not None:
                node_attempt, report = ended
                complete.record(
                    tx, execution_id, node_id, node_attempt, NodeStatus.WAITING, report,
                    use_attempt=False,
                )  # fmt: skip
                complete.report_ended_children(tx)
        dispatches += tx.dispatches
    return dispatches
