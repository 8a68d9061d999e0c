"""Foreach items: each item of a foreach node is its own job, claimed, run, retried and
completed on its own, `max_parallel` at a time, on any worker. The node waits (holding no
worker) and finishes in the transaction that completes its last item, with the item outputs
in item order."""

from __future__ import annotations

import time
from typing import Any

from spane_cli.engine import scheduler
from spane_cli.engine.states import NodeStatus
from spane_cli.store import events, sql
from spane_cli.store.db import write_transaction
from spane_cli.store.store import (
    ACTIVE_EXECUTION,
    MAX_LOST,
    ClaimedNode,
    Dispatch,
    ExecutionInfo,
    Outcome,
    Store,
    _Batch,
    _first_line,
)
from spane_cli.store.versions import LoadedVersion

_ITEM_COLUMNS = (
    "execution_id",
    "node_id",
    "item_index",
    "status",
    "attempt",
    "lost_count",
    "value",
    "queued_at",
)


def start_items(
    store: Store,
    info: ExecutionInfo,
    version: LoadedVersion,
    node_id: str,
    attempt: int,
    values: Any,
    now: float,
    batch: _Batch,
) -> bool:
    """running -> waiting with one row per item; the first `max_parallel` items are queued."""
    items = list(values or [])
    execution_id = info.id
    if not items:
        sql.run(
            store.database,
            "UPDATE node_run SET items_total = 0, items_done = 0, items_failed = 0"
            " WHERE execution_id = ? AND node_id = ? AND attempt = ? AND status = 'running'",
            (execution_id, node_id, attempt),
        )
        return store._record(
            execution_id, node_id, attempt, NodeStatus.RUNNING, Outcome("succeeded", output=[]),
            now, batch,
        )  # fmt: skip
    node = version.workflow.nodes[node_id]
    moved = sql.run(
        store.database,
        "UPDATE node_run SET status = 'waiting', items_total = ?, items_done = 0,"
        " items_failed = 0 WHERE execution_id = ? AND node_id = ? AND attempt = ?"
        " AND status = 'running'",
        (len(items), execution_id, node_id, attempt),
    ).rowcount
    if moved != 1:
        return False
    # A replayed node starts its items over.
    sql.run(
        store.database,
        "DELETE FROM node_item WHERE execution_id = ? AND node_id = ?",
        (execution_id, node_id),
    )
    first = min(node.max_parallel or len(items), len(items))
    sql.insert_rows(
        store.database,
        "node_item",
        _ITEM_COLUMNS,
        [
            (
                execution_id,
                node_id,
                index,
                "queued" if index < first else "pending",
                1 if index < first else 0,
                0,
                sql.dumps(value),
                now if index < first else None,
            )
            for index, value in enumerate(items)
        ],
    )
    dispatches = [Dispatch(execution_id, node_id, 1, node.queue, i) for i in range(first)]
    store._write_outbox(dispatches, now)
    batch.dispatches.extend(dispatches)
    events.emit(execution_id, events.NODE_WAITING, now, node_id, items=len(items))
    return True


def claim_item(
    store: Store,
    execution_id: str,
    node_id: str,
    attempt: int,
    index: int,
    worker: str,
    now: float | None = None,
) -> ClaimedNode | None:
    """queued -> running for one item attempt, or None when the job is stale."""
    now = time.time() if now is None else now
    info = store.execution_info(execution_id)
    if info is None:
        return None
    version = store.versions.get(info.version_id)
    with write_transaction(store.database):
        claimed = sql.run(
            store.database,
            "UPDATE node_item SET status = 'running', started_at = ?, worker = ?"
            " WHERE execution_id = ? AND node_id = ? AND item_index = ? AND attempt = ?"
            " AND status = 'queued' AND EXISTS (SELECT 1 FROM execution WHERE id = ?"
            " AND status IN ('pending', 'running'))",
            (now, worker, execution_id, node_id, index, attempt, execution_id),
        ).rowcount
        if claimed != 1:
            return None
        sql.run(
            store.database,
            "DELETE FROM outbox WHERE execution_id = ? AND node_id = ? AND item = ?",
            (execution_id, node_id, index),
        )
        value = sql.loads(
            sql.run(
                store.database,
                "SELECT value FROM node_item WHERE execution_id = ? AND node_id = ?"
                " AND item_index = ?",
                (execution_id, node_id, index),
            ).fetchone()[0]
        )
        needs = version.workflow.nodes[node_id].needs
        parent_outputs = store._parent_outputs(execution_id, needs) if needs else {}
    return ClaimedNode(
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        version=version,
        workflow_input=info.input,
        parent_outputs=parent_outputs,
        timeout_at=info.timeout_at,
        item=index,
        item_value=value,
    )


def complete_item(
    store: Store, claim: ClaimedNode, outcome: Outcome, now: float | None = None
) -> list[Dispatch]:
    now = time.time() if now is None else now
    batch = _Batch()
    with write_transaction(store.database):
        _record_item(store, claim, outcome, now, batch)
    return batch.dispatches


def _record_item(
    store: Store, claim: ClaimedNode, outcome: Outcome, now: float, batch: _Batch
) -> None:
    execution_id, node_id, index = claim.execution_id, claim.node_id, claim.item
    node = claim.version.workflow.nodes[node_id]
    if outcome.logs:
        sql.run(
            store.database,
            "INSERT INTO node_log (execution_id, node_id, attempt, text, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (execution_id, node_id, claim.attempt, outcome.logs, now),
        )
    guard = (
        " WHERE execution_id = ? AND node_id = ? AND item_index = ? AND attempt = ?"
        " AND status = 'running'"
    )
    key = (execution_id, node_id, index, claim.attempt)
    if outcome.status == "succeeded":
        changed = sql.run(
            store.database,
            "UPDATE node_item SET status = 'succeeded', output = ?, error = NULL,"
            " finished_at = ?" + guard,
            (sql.dumps(outcome.output), now, *key),
        ).rowcount
        if changed == 1:
            _item_ended(store, claim, failed=False, now=now, batch=batch)
        return
    delay = scheduler.next_retry_delay(node, claim.attempt)
    if delay is not None:
        changed = sql.run(
            store.database,
            "UPDATE node_item SET status = ?, error = ?, due_at = ?, finished_at = ?,"
            " attempt = attempt + ?, queued_at = ?" + guard,
            (
                "queued" if delay <= 0 else "retrying",
                outcome.error,
                now + delay if delay > 0 else None,
                now,
                1 if delay <= 0 else 0,
                now if delay <= 0 else None,
                *key,
            ),
        ).rowcount
        if changed != 1:
            return
        events.emit(
            execution_id,
            events.NODE_RETRYING,
            now,
            node_id,
            item=index,
            attempt=claim.attempt,
            error=_first_line(outcome.error),
        )
        if delay <= 0:
            dispatch = Dispatch(execution_id, node_id, claim.attempt + 1, node.queue, index)
            store._write_outbox([dispatch], now)
            batch.dispatches.append(dispatch)
        return
    changed = sql.run(
        store.database,
        "UPDATE node_item SET status = 'failed', error = ?, finished_at = ?" + guard,
        (outcome.error or "failed", now, *key),
    ).rowcount
    if changed == 1:
        _item_ended(store, claim, failed=True, now=now, batch=batch)


def _item_ended(
    store: Store, claim: ClaimedNode, *, failed: bool, now: float, batch: _Batch
) -> None:
    """Count the item; queue the next pending one; finish the node after the last."""
    execution_id, node_id = claim.execution_id, claim.node_id
    # This UPDATE also locks the node's row, so concurrent item completions take turns.
    row = sql.run(
        store.database,
        "UPDATE node_run SET items_done = items_done + 1, items_failed = items_failed + ?"
        " WHERE execution_id = ? AND node_id = ? AND status = 'waiting'"
        " RETURNING items_done, items_total, items_failed, attempt",
        (1 if failed else 0, execution_id, node_id),
    ).fetchone()
    if row is None:
        return  # the node was cancelled meanwhile
    done, total, failures, node_attempt = (int(v) for v in row)
    node = claim.version.workflow.nodes[node_id]
    following = sql.run(
        store.database,
        "SELECT item_index FROM node_item WHERE execution_id = ? AND node_id = ?"
        " AND status = 'pending' ORDER BY item_index LIMIT 1",
        (execution_id, node_id),
    ).fetchone()
    if following is not None:
        next_index = int(following[0])
        sql.run(
            store.database,
            "UPDATE node_item SET status = 'queued', attempt = 1, queued_at = ?"
            " WHERE execution_id = ? AND node_id = ? AND item_index = ? AND status = 'pending'",
            (now, execution_id, node_id, next_index),
        )
        dispatch = Dispatch(execution_id, node_id, 1, node.queue, next_index)
        store._write_outbox([dispatch], now)
        batch.dispatches.append(dispatch)
    if done < total:
        return
    if failures:
        first_failed = sql.run(
            store.database,
            "SELECT item_index, error FROM node_item WHERE execution_id = ? AND node_id = ?"
            " AND status = 'failed' ORDER BY item_index LIMIT 1",
            (execution_id, node_id),
        ).fetchone()
        error = f"item {first_failed[0]} failed: {first_failed[1]}"
        if failures > 1:
            error += f" (and {failures - 1} more items)"
        outcome = Outcome("failed", error=error)
    else:
        outputs = [
            sql.loads(text)
            for (text,) in sql.run(
                store.database,
                "SELECT output FROM node_item WHERE execution_id = ? AND node_id = ?"
                " ORDER BY item_index",
                (execution_id, node_id),
            ).fetchall()
        ]
        outcome = Outcome("succeeded", output=outputs)
    # Items used the retry policy one by one; the node itself is not tried again.
    store._record(
        execution_id, node_id, node_attempt, NodeStatus.WAITING, outcome, now, batch,
        use_attempt=False,
    )  # fmt: skip


def wake_due_items(store: Store, now: float) -> list[Dispatch]:
    """Item retries whose wait is over go back on a queue."""
    batch = _Batch()
    rows = sql.run(
        store.database,
        "SELECT i.execution_id, i.node_id, i.item_index, i.attempt FROM node_item i"
        " JOIN execution e ON e.id = i.execution_id"
        " WHERE i.status = 'retrying' AND i.due_at <= ? AND e.status IN ('pending', 'running')"
        " LIMIT 500",
        (now,),
    ).fetchall()
    for execution_id, node_id, index, attempt in rows:
        with write_transaction(store.database):
            moved = sql.run(
                store.database,
                "UPDATE node_item SET status = 'queued', attempt = attempt + 1, due_at = NULL,"
                " queued_at = ? WHERE execution_id = ? AND node_id = ? AND item_index = ?"
                " AND attempt = ? AND status = 'retrying'",
                (now, execution_id, node_id, index, attempt),
            ).rowcount
            if moved != 1:
                continue
            info = store.execution_info(execution_id)
            assert info is not None
            queue = store.versions.get(info.version_id).workflow.nodes[node_id].queue
            dispatch = Dispatch(execution_id, node_id, int(attempt) + 1, queue, int(index))
            store._write_outbox([dispatch], now)
            batch.dispatches.append(dispatch)
    return batch.dispatches


def recover_lost_items(
    store: Store, alive: set[str], older_than: float, now: float
) -> list[Dispatch]:
    """Running items of dead workers go back on a queue without using an attempt."""
    batch = _Batch()
    rows = sql.run(
        store.database,
        "SELECT i.execution_id, i.node_id, i.item_index, i.attempt, i.worker, i.lost_count"
        " FROM node_item i JOIN execution e ON e.id = i.execution_id"
        " WHERE i.status = 'running' AND i.started_at < ? AND e.status IN ('running', 'paused')",
        (older_than,),
    ).fetchall()
    for execution_id, node_id, index, attempt, worker, lost_count in rows:
        if worker in alive:
            continue
        info = store.execution_info(execution_id)
        if info is None:
            continue
        version = store.versions.get(info.version_id)
        with write_transaction(store.database):
            if int(lost_count) + 1 >= MAX_LOST:
                claim = ClaimedNode(
                    execution_id, node_id, int(attempt), version, info.input, {}, None,
                    item=int(index),
                )  # fmt: skip
                error = f"worker lost\nits worker died {MAX_LOST} times in a row"
                changed = sql.run(
                    store.database,
                    "UPDATE node_item SET status = 'failed', error = ?, finished_at = ?"
                    " WHERE execution_id = ? AND node_id = ? AND item_index = ? AND attempt = ?"
                    " AND status = 'running'",
                    (error, now, execution_id, node_id, index, attempt),
                ).rowcount
                if changed == 1:
                    _item_ended(store, claim, failed=True, now=now, batch=batch)
                continue
            moved = sql.run(
                store.database,
                "UPDATE node_item SET status = 'queued', lost_count = lost_count + 1,"
                " queued_at = ?, worker = NULL WHERE execution_id = ? AND node_id = ?"
                " AND item_index = ? AND attempt = ? AND status = 'running'",
                (now, execution_id, node_id, index, attempt),
            ).rowcount
            if moved != 1:
                continue
            queue = version.workflow.nodes[node_id].queue
            dispatch = Dispatch(execution_id, node_id, int(attempt), queue, int(index))
            store._write_outbox([dispatch], now)
            events.emit(
                execution_id, events.NODE_LOST, now, node_id, item=int(index), worker=worker
            )
            batch.dispatches.append(dispatch)
    return batch.dispatches


__all__ = [
    "ACTIVE_EXECUTION",
    "claim_item",
    "complete_item",
    "recover_lost_items",
    "start_items",
    "wake_due_items",
]
