"""Recovering work whose worker is gone (kill -9, a lost host): a running node or item whose
worker stopped beating goes back on its queue without using an attempt; after MAX_LOST losses
in a row it fails with `worker lost`."""

from __future__ import annotations

from collections.abc import Collection

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import complete, events, items, pools
from spane_cli.store.models import Execution, NodeRun
from spane_cli.store.records import MAX_LOST, Dispatch, Report, dispatch_of
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.workflow.durations import format_duration

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
            NodeRun.execution,
            NodeRun.node_id,
            NodeRun.attempt,
            NodeRun.worker,
            NodeRun.lost_count,
            NodeRun.started_at,
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
            overran = _overran(tx, row.execution_id, row.node_id, row.started_at, now)
            if overran is not None:
                # Its worker died past the node's timeout (the keeper kills a worker stuck in
                # a call no signal stops): the attempt timed out, and counts as one.
                complete.record(
                    tx, row.execution_id, row.node_id, row.attempt, NodeStatus.RUNNING,
                    Report("failed", error=overran), use_attempt=True,
                )  # fmt: skip
                complete.report_ended_children(tx)
            elif row.lost_count + 1 >= MAX_LOST:
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
                        # A deferral it had before a duplicate job claimed it is over: it
                        # has its job now, and a wake must not send it a second one.
                        due_at=None,
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
                    workflow = tx.version(info.version_id).workflow
                    # The lost run's slot comes back with the node's new job.
                    pools.release_nodes(tx, workflow, row.execution_id, [row.node_id])
                    node = workflow.nodes[row.node_id]
                    tx.enqueue([dispatch_of(row.execution_id, node, row.attempt)])
                    tx.event(
                        row.execution_id,
                        row.node_id,
                        events.NODE_LOST,
                        {"worker": row.worker, "attempt": row.attempt},
                    )
        dispatches += tx.dispatches
    return dispatches


def _overran(
    tx: Tx, execution_id: str, node_id: str, started_at: float | None, now: float
) -> str | None:
    """The timeout error of a lost run that had outlived its node's `timeout`, else None."""
    info = tx.info(execution_id)
    if info is None or started_at is None:
        return None
    timeout = tx.version(info.version_id).workflow.nodes[node_id].timeout
    if timeout is None or now < started_at + timeout:
        return None
    stopped = "its worker was stopped: the run did not return"
    return f"timed out after {format_duration(timeout)}\n{stopped}"


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
