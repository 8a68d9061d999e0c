"""Foreach items: each item of a foreach node is its own job, claimed, run, retried and
completed on its own, `max_parallel` at a time, on any worker. The node waits (holding no
worker) and finishes in the transaction that completes its last item, with the item outputs
in item order. Functions that end the last item return the node's report; recording it is
the caller's (complete.py), so this module needs nothing above it."""

from __future__ import annotations

from typing import Any

import peewee

from spane_cli import scheduler
from spane_cli.states import OutcomeKind
from spane_cli.store import events, pools, sql, subworkflows
from spane_cli.store.claim import claimed, parent_outputs
from spane_cli.store.records import (
    MAX_LOST,
    ClaimedNode,
    ExecutionInfo,
    Report,
    StaleReport,
    dispatch_of,
)
from spane_cli.store.tx import EndedChild, Tx
from spane_cli.store.versions import LoadedVersion
from spane_cli.text import first_line

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
_ITEM_KEY = " WHERE execution_id = ? AND node_id = ? AND item_index = ? AND attempt = ?"
# A node's report once its last item ended: (the node's attempt, the report).
NodeReport = tuple[int, Report]


def record_no_items(tx: Tx, execution_id: str, node_id: str, attempt: int) -> None:
    """A foreach over an empty list: the node succeeds with [] (the caller records it)."""
    tx.run(
        "UPDATE node_run SET items_total = 0, items_done = 0, items_failed = 0"
        " WHERE execution_id = ? AND node_id = ? AND attempt = ? AND status = 'running'",
        (execution_id, node_id, attempt),
    )


def start_items(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    node_id: str,
    attempt: int,
    values: list[Any],
    worker: str | None = None,
) -> bool:
    """running -> waiting with one row per item; the first `max_parallel` items are queued."""
    execution_id = info.id
    node = version.workflow.nodes[node_id]
    owner = " AND worker = ?" if worker is not None else ""
    moved = tx.run(
        "UPDATE node_run SET status = 'waiting', items_total = ?, items_done = 0,"
        " items_failed = 0 WHERE execution_id = ? AND node_id = ? AND attempt = ?"
        f" AND status = 'running'{owner}",
        (len(values), execution_id, node_id, attempt, *((worker,) if worker else ())),
    ).rowcount
    if moved != 1:
        return False
    # A replayed node starts its items over.
    tx.run("DELETE FROM node_item WHERE execution_id = ? AND node_id = ?", (execution_id, node_id))
    first = min(node.max_parallel or len(values), len(values))
    sql.insert_rows(
        tx.database,
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
                tx.now if index < first else None,
            )
            for index, value in enumerate(values)
        ],
    )
    tx.enqueue([dispatch_of(execution_id, node, 1, i) for i in range(first)])
    tx.event(execution_id, node_id, events.NODE_WAITING, {"items": len(values)})
    return True


def claim_item(
    tx: Tx, execution_id: str, node_id: str, attempt: int, index: int, worker: str
) -> ClaimedNode | None:
    """queued -> running for one item attempt, or None when the job is stale."""
    info = tx.info(execution_id)
    if info is None:
        return None
    version = tx.version(info.version_id)
    # An item's claim changes no execution row: its deadline comes back with the claim.
    taken = tx.run(
        "UPDATE node_item SET status = 'running', started_at = ?, worker = ?"
        + _ITEM_KEY
        + " AND status = 'queued' AND EXISTS (SELECT 1 FROM execution WHERE id = ?"
        " AND status IN ('pending', 'running'))"
        " RETURNING value, (SELECT timeout_at FROM execution WHERE id = ?), queued_at",
        (tx.now, worker, execution_id, node_id, index, attempt, execution_id, execution_id),
    ).fetchone()
    if taken is None:
        return None
    tx.deadlines.setdefault(execution_id, taken[1])
    tx.run(
        "DELETE FROM outbox WHERE execution_id = ? AND node_id = ? AND item = ?",
        (execution_id, node_id, index),
    )
    node = version.workflow.nodes[node_id]
    pool = pools.item_pool(node)
    declared = version.workflow.pools.get(pool) if pool is not None else None
    if pool is not None and not pools.acquire(
        tx, pool, declared, execution_id, node_id, attempt, node.queue, index, worker
    ):
        # Full: the item waits for a slot without holding this worker.
        tx.run(
            "UPDATE node_item SET status = 'queued', started_at = NULL, worker = NULL"
            + _ITEM_KEY
            + " AND status = 'running'",
            (execution_id, node_id, index, attempt),
        )
        return None
    needs = version.workflow.nodes[node_id].needs
    outputs = parent_outputs(tx, execution_id, needs) if needs else {}
    value = sql.loads(taken[0])
    return claimed(
        tx, info, version, node_id, attempt, outputs, item=index, item_value=value, worker=worker,
        queued_at=taken[2],
    )  # fmt: skip


def record_item(tx: Tx, claim: ClaimedNode, report: Report) -> NodeReport | None:
    """Record one item's report; returns the node's report when this was its last item.
    A delay item and a sub-workflow item wait (holding no worker) and settle later, through
    `settle_waiting_item`. An item that stopped running frees its pool slot."""
    ended = _record_item(tx, claim, report)
    if pools.item_pool(claim.version.workflow.nodes[claim.node_id]) is not None:
        assert claim.item is not None
        still = tx.run(
            "SELECT 1 FROM node_item" + _ITEM_KEY + " AND status = 'running' AND worker = ?",
            (claim.execution_id, claim.node_id, claim.item, claim.attempt, claim.worker),
        ).fetchone()
        if still is None:
            pools.release(tx, claim.execution_id, claim.node_id, claim.item, claim.worker)
    return ended


def _record_item(tx: Tx, claim: ClaimedNode, report: Report) -> NodeReport | None:
    execution_id, node_id, index = claim.execution_id, claim.node_id, claim.item
    assert index is not None
    if report.logs:
        tx.run(
            "INSERT INTO node_log (execution_id, node_id, attempt, text, created_at, worker, item)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (execution_id, node_id, claim.attempt, report.logs, tx.now, claim.worker, index),
        )
    guard = _ITEM_KEY + " AND status = 'running' AND worker = ?"
    key = (execution_id, node_id, index, claim.attempt, claim.worker)
    if report.kind == OutcomeKind.WAIT:
        wait_until = report.wait_until if report.wait_until is not None else tx.now
        changed = tx.run(
            "UPDATE node_item SET status = 'waiting', output = ?, due_at = ?" + guard,
            (sql.dumps(report.output), wait_until, *key),
        ).rowcount
        if changed == 1:
            tx.event(
                execution_id, node_id, events.NODE_WAITING, {"item": index, "until": wait_until}
            )
        return None
    if report.kind == OutcomeKind.CHILD:
        info = tx.info(execution_id)
        assert info is not None
        child_id, failure = subworkflows.create_child(tx, info, claim.version, node_id, report)
        if child_id is None:
            report = Report("failed", error=failure)
        else:
            changed = tx.run(
                "UPDATE node_item SET status = 'waiting', child_execution_id = ?, due_at = NULL"
                + guard,
                (child_id, *key),
            ).rowcount
            if changed != 1:
                raise StaleReport()  # roll back the child just created
            tx.event(
                execution_id,
                node_id,
                events.NODE_WAITING,
                {"item": index, "child_execution": child_id},
            )
            return None
    return _settle_item(tx, claim.version, execution_id, node_id, index, claim.attempt, report,
                        "running", claim.worker)  # fmt: skip


def settle_waiting_item(
    tx: Tx, execution_id: str, node_id: str, index: int, attempt: int, report: Report
) -> NodeReport | None:
    """A waiting item's delay is over, or its sub-workflow ended: it succeeds, is retried or
    fails as a run of it would; the node's report when this was its last item."""
    info = tx.info(execution_id)
    if info is None:
        return None
    version = tx.version(info.version_id)
    return _settle_item(tx, version, execution_id, node_id, index, attempt, report, "waiting")


def _settle_item(
    tx: Tx,
    version: LoadedVersion,
    execution_id: str,
    node_id: str,
    index: int,
    attempt: int,
    report: Report,
    from_status: str,
    worker: str | None = None,
) -> NodeReport | None:
    node = version.workflow.nodes[node_id]
    guard = _ITEM_KEY + " AND status = ?" + (" AND worker = ?" if worker is not None else "")
    key = (execution_id, node_id, index, attempt, from_status, *((worker,) if worker else ()))
    if report.kind == OutcomeKind.SUCCEEDED:
        changed = tx.run(
            "UPDATE node_item SET status = 'succeeded', output = ?, error = NULL,"
            " due_at = NULL, finished_at = ?" + guard,
            (sql.dumps(report.output), tx.now, *key),
        ).rowcount
        return item_ended(tx, version, execution_id, node_id, failed=False) if changed else None
    failure = scheduler.retry_scope(attempt, report.error, report.exit_code, report.http_status)
    delay = scheduler.next_retry_delay(node, attempt, failure=failure)
    if delay is not None:
        changed = tx.run(
            "UPDATE node_item SET status = ?, error = ?, due_at = ?, finished_at = ?,"
            " attempt = attempt + ?, queued_at = ?, child_execution_id = NULL" + guard,
            (
                "queued" if delay <= 0 else "retrying",
                report.error,
                tx.now + delay if delay > 0 else None,
                tx.now,
                1 if delay <= 0 else 0,
                tx.now if delay <= 0 else None,
                *key,
            ),
        ).rowcount
        if changed != 1:
            return None
        tx.event(
            execution_id,
            node_id,
            events.NODE_RETRYING,
            {"item": index, "attempt": attempt, "error": first_line(report.error)},
        )
        if delay <= 0:
            tx.enqueue([dispatch_of(execution_id, node, attempt + 1, index)])
        return None
    changed = tx.run(
        "UPDATE node_item SET status = 'failed', error = ?, due_at = NULL, finished_at = ?" + guard,
        (report.error or "failed", tx.now, *key),
    ).rowcount
    return item_ended(tx, version, execution_id, node_id, failed=True) if changed else None


def child_ended(tx: Tx, ended: EndedChild) -> NodeReport | None:
    """A sub-workflow started by a foreach item ended: the item settles (None when no item
    waits for it any more: cancelled, or the node was reopened)."""
    row = tx.run(
        "SELECT item_index, attempt FROM node_item WHERE execution_id = ? AND node_id = ?"
        " AND child_execution_id = ? AND status = 'waiting'",
        (ended.parent_id, ended.parent_node_id, ended.execution_id),
    ).fetchone()
    if row is None:
        return None
    index, attempt = int(row[0]), int(row[1])
    report = subworkflows.child_result(ended)
    return settle_waiting_item(tx, ended.parent_id, ended.parent_node_id, index, attempt, report)


def item_ended(
    tx: Tx, version: LoadedVersion, execution_id: str, node_id: str, *, failed: bool
) -> NodeReport | None:
    """Count the item; queue the next pending one; after the last, the node's report."""
    row = tx.run(
        "UPDATE node_run SET items_done = items_done + 1, items_failed = items_failed + ?"
        " WHERE execution_id = ? AND node_id = ? AND status = 'waiting'"
        " RETURNING items_done, items_total, items_failed, attempt",
        (1 if failed else 0, execution_id, node_id),
    ).fetchone()
    if row is None:
        return None  # the node was cancelled meanwhile
    done, total, failures, node_attempt = (int(v) for v in row)
    node = version.workflow.nodes[node_id]
    following = tx.run(
        "SELECT item_index FROM node_item WHERE execution_id = ? AND node_id = ?"
        " AND status = 'pending' ORDER BY item_index LIMIT 1",
        (execution_id, node_id),
    ).fetchone()
    if following is not None:
        next_index = int(following[0])
        tx.run(
            "UPDATE node_item SET status = 'queued', attempt = 1, queued_at = ?"
            " WHERE execution_id = ? AND node_id = ? AND item_index = ? AND status = 'pending'",
            (tx.now, execution_id, node_id, next_index),
        )
        tx.enqueue([dispatch_of(execution_id, node, 1, next_index)])
    if done < total:
        return None
    if failures:
        first_failed = tx.run(
            "SELECT item_index, error FROM node_item WHERE execution_id = ? AND node_id = ?"
            " AND status = 'failed' ORDER BY item_index LIMIT 1",
            (execution_id, node_id),
        ).fetchone()
        error = f"item {first_failed[0]} failed: {first_failed[1]}"
        if failures > 1:
            error += f" (and {failures - 1} more items)"
        return node_attempt, Report("failed", error=error)
    outputs = [
        sql.loads(text)
        for (text,) in tx.run(
            "SELECT output FROM node_item WHERE execution_id = ? AND node_id = ?"
            " ORDER BY item_index",
            (execution_id, node_id),
        ).fetchall()
    ]
    chosen = scheduler.foreach_choice(node, outputs)
    return node_attempt, Report("succeeded", output=outputs, chosen=chosen)


def due_items(database: peewee.Database, now: float) -> list[tuple[str, str, int, int, str]]:
    """(execution, node, item, attempt, status) of item retries and delays whose wait is over
    (a plain read)."""
    rows = sql.run(
        database,
        "SELECT i.execution_id, i.node_id, i.item_index, i.attempt, i.status FROM node_item i"
        " JOIN execution e ON e.id = i.execution_id"
        " WHERE i.status IN ('retrying', 'waiting') AND i.due_at <= ?"
        " AND i.child_execution_id IS NULL AND e.status IN ('pending', 'running')"
        " LIMIT 500",
        (now,),
    ).fetchall()
    return [(e, n, int(i), int(a), str(st)) for e, n, i, a, st in rows]


def wait_over(
    tx: Tx, execution_id: str, node_id: str, index: int, attempt: int
) -> NodeReport | None:
    """A delay item whose time has come succeeds with the output it parked with."""
    row = tx.run(
        "SELECT output FROM node_item" + _ITEM_KEY + " AND status = 'waiting'"
        " AND child_execution_id IS NULL",
        (execution_id, node_id, index, attempt),
    ).fetchone()
    if row is None:
        return None
    over = Report("succeeded", output=sql.loads(row[0]))
    return settle_waiting_item(tx, execution_id, node_id, index, attempt, over)


def requeue_item(tx: Tx, execution_id: str, node_id: str, index: int, attempt: int) -> None:
    """retrying -> queued for the next attempt of one item, with its outbox row."""
    moved = tx.run(
        "UPDATE node_item SET status = 'queued', attempt = attempt + 1, due_at = NULL,"
        " queued_at = ?" + _ITEM_KEY + " AND status = 'retrying'",
        (tx.now, execution_id, node_id, index, attempt),
    ).rowcount
    info = tx.info(execution_id)
    if moved != 1 or info is None:
        return
    node = tx.version(info.version_id).workflow.nodes[node_id]
    tx.enqueue([dispatch_of(execution_id, node, attempt + 1, index)])


def running_items(
    database: peewee.Database, older_than: float
) -> list[tuple[str, str, int, int, str, int]]:
    """(execution, node, item, attempt, worker, lost count) of items running since before
    (a plain read)."""
    rows = sql.run(
        database,
        "SELECT i.execution_id, i.node_id, i.item_index, i.attempt, i.worker, i.lost_count"
        " FROM node_item i JOIN execution e ON e.id = i.execution_id"
        " WHERE i.status = 'running' AND i.started_at < ? AND e.status IN ('running', 'paused')",
        (older_than,),
    ).fetchall()
    return [(e, n, int(i), int(a), w, int(lost)) for e, n, i, a, w, lost in rows]


def lose_item(
    tx: Tx, execution_id: str, node_id: str, index: int, attempt: int, worker: str, lost: int
) -> NodeReport | None:
    """An item whose worker died goes back on its queue without using an attempt; after
    MAX_LOST losses in a row it fails (which may end the node: its report is returned)."""
    info = tx.info(execution_id)
    if info is None:
        return None
    tx.lock_executions([execution_id])
    version = tx.version(info.version_id)
    key = (execution_id, node_id, index, attempt)
    if lost + 1 >= MAX_LOST:
        error = f"worker lost\nits worker died {MAX_LOST} times in a row"
        changed = tx.run(
            "UPDATE node_item SET status = 'failed', error = ?, finished_at = ?"
            + _ITEM_KEY
            + " AND status = 'running'",
            (error, tx.now, *key),
        ).rowcount
        if changed != 1:
            return None
        pools.release(tx, execution_id, node_id, index, worker)
        return item_ended(tx, version, execution_id, node_id, failed=True)
    moved = tx.run(
        "UPDATE node_item SET status = 'queued', lost_count = lost_count + 1,"
        " queued_at = ?, worker = NULL, due_at = NULL" + _ITEM_KEY + " AND status = 'running'",
        (tx.now, *key),
    ).rowcount
    if moved == 1:
        pools.release(tx, execution_id, node_id, index, worker)
        node = version.workflow.nodes[node_id]
        tx.enqueue([dispatch_of(execution_id, node, attempt, index)])
        tx.event(execution_id, node_id, events.NODE_LOST, {"item": index, "worker": worker})
    return None
