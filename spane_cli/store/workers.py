"""Worker heartbeats, and recovering nodes whose worker stopped beating (kill -9, lost host)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from spane_cli.engine.states import ExecutionStatus, NodeStatus
from spane_cli.store import events
from spane_cli.store.db import write_transaction
from spane_cli.store.models import Execution, NodeRun, WorkerHeartbeat
from spane_cli.store.store import MAX_LOST, Dispatch, Outcome, Store, _Batch

HEARTBEAT_EVERY_SECONDS = 1.5
HEARTBEAT_TTL_SECONDS = 6.0


def beat(name: str, host: str, pid: int, queues: Sequence[str], now: float | None = None) -> None:
    now = time.time() if now is None else now
    updated = (
        WorkerHeartbeat.update(last_seen=now, pid=pid, host=host, queues=list(queues))
        .where(WorkerHeartbeat.name == name)
        .execute()
    )
    if not updated:
        WorkerHeartbeat.insert(
            name=name, host=host, pid=pid, queues=list(queues), started_at=now, last_seen=now
        ).on_conflict_ignore().execute()


def forget(name: str) -> None:
    WorkerHeartbeat.delete().where(WorkerHeartbeat.name == name).execute()


def live_workers(now: float | None = None) -> list[WorkerHeartbeat]:
    now = time.time() if now is None else now
    return list(
        WorkerHeartbeat.select()
        .where(WorkerHeartbeat.last_seen >= now - HEARTBEAT_TTL_SECONDS)
        .order_by(WorkerHeartbeat.name)
    )


def recover_lost_nodes(store: Store, now: float | None = None) -> list[Dispatch]:
    """Running nodes whose worker is gone go back on a queue without using an attempt;
    after MAX_LOST losses in a row the node fails with `worker lost`."""
    now = time.time() if now is None else now
    alive = {w.name for w in live_workers(now)}
    running = list(
        NodeRun.select(
            NodeRun.execution, NodeRun.node_id, NodeRun.attempt, NodeRun.worker, NodeRun.lost_count
        )
        .join(Execution)
        .where(
            (NodeRun.status == NodeStatus.RUNNING)
            & (NodeRun.started_at < now - HEARTBEAT_TTL_SECONDS)
            & (Execution.status.in_([ExecutionStatus.RUNNING, ExecutionStatus.PAUSED]))
        )
    )
    batch = _Batch()
    for row in running:
        if row.worker in alive:
            continue
        with write_transaction(store.database):
            if row.lost_count + 1 >= MAX_LOST:
                store._record(
                    row.execution_id,
                    row.node_id,
                    row.attempt,
                    NodeStatus.RUNNING,
                    Outcome(
                        "failed", error=f"worker lost\nits worker died {MAX_LOST} times in a row"
                    ),
                    now,
                    batch,
                    use_attempt=False,
                )
                continue
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
            if moved != 1:
                continue
            version = store.versions.get(Execution.get_by_id(row.execution_id).version_id)
            dispatch = Dispatch(
                row.execution_id,
                row.node_id,
                row.attempt,
                version.workflow.nodes[row.node_id].queue,
            )
            store._write_outbox([dispatch], now)
            events.emit(
                row.execution_id,
                events.NODE_LOST,
                now,
                row.node_id,
                worker=row.worker,
                attempt=row.attempt,
            )
            batch.dispatches.append(dispatch)
    return batch.dispatches
