"""Deferred starts: a queued node (or foreach item) that a rate limit or an open circuit
breaker does not let run yet stays `queued`, with no job and a `due_at`, so it holds no worker
process; at `due_at` it is dispatched again (`wake`, from the timers), with the same attempt.

The engine decides when (it asks the limiter or the breaker, engine/gates.py); the store only
parks and wakes. The reason is the `node.deferred` event, which `get` and `watch` show.
"""

from __future__ import annotations

from spane_cli.states import ACTIVE_EXECUTION
from spane_cli.store import events, sql
from spane_cli.store.records import Dispatch
from spane_cli.store.tx import Caches, Tx, transaction

_ACTIVE = ", ".join(f"'{status}'" for status in sorted(ACTIVE_EXECUTION))


def defer(
    tx: Tx,
    execution_id: str,
    node_id: str,
    attempt: int,
    item: int | None,
    until: float,
    reason: str,
) -> bool:
    """queued (with a job) -> queued until `until` (without one); False when the job was
    stale (the attempt moved on, the node ended)."""
    if item is None:
        moved = tx.run(
            "UPDATE node_run SET due_at = ? WHERE execution_id = ? AND node_id = ?"
            " AND attempt = ? AND status = 'queued'",
            (until, execution_id, node_id, attempt),
        ).rowcount
        same_item = "item IS NULL"
        params: tuple[object, ...] = (execution_id, node_id)
    else:
        moved = tx.run(
            "UPDATE node_item SET due_at = ? WHERE execution_id = ? AND node_id = ?"
            " AND item_index = ? AND attempt = ? AND status = 'queued'",
            (until, execution_id, node_id, item, attempt),
        ).rowcount
        same_item = "item = ?"
        params = (execution_id, node_id, item)
    if moved != 1:
        return False
    tx.run(f"DELETE FROM outbox WHERE execution_id = ? AND node_id = ? AND {same_item}", params)
    data: dict[str, object] = {"attempt": attempt, "reason": reason, "until": until}
    if item is not None:
        data["item"] = item
    tx.event(execution_id, node_id, events.NODE_DEFERRED, data)
    return True


def due(caches: Caches, now: float, limit: int = 500) -> list[str]:
    """Executions with a deferred node or item whose time has come (one plain read: most
    passes find nothing and must not pay for a write transaction)."""
    rows = sql.run(
        caches.database,
        "SELECT DISTINCT t.execution_id FROM (SELECT execution_id FROM node_run"
        " WHERE status = 'queued' AND due_at <= ? UNION ALL SELECT execution_id FROM node_item"
        " WHERE status = 'queued' AND due_at <= ?) t JOIN execution e ON e.id = t.execution_id"
        f" WHERE e.status IN ({_ACTIVE}) LIMIT ?",
        (now, now, limit),
    ).fetchall()
    return sorted(row[0] for row in rows)


def wake(caches: Caches, now: float) -> list[Dispatch]:
    """Deferred nodes and items whose time has come get their job again, in one transaction
    (the execution rows locked first)."""
    execution_ids = due(caches, now)
    if not execution_ids:
        return []
    with transaction(caches, now) as tx:
        tx.lock_executions(execution_ids)
        for member, values in sql.member_of(tx.database, execution_ids):
            nodes = tx.run(
                "UPDATE node_run SET due_at = NULL WHERE status = 'queued' AND due_at <= ?"
                f" AND execution_id {member} RETURNING execution_id, node_id, attempt, queue",
                (now, *values),
            ).fetchall()
            tx.enqueue(
                tx.caches.with_priorities([Dispatch(e, n, int(a), q) for e, n, a, q in nodes])
            )
            found_items = tx.run(
                "UPDATE node_item SET due_at = NULL WHERE status = 'queued' AND due_at <= ?"
                f" AND execution_id {member}"
                " RETURNING execution_id, node_id, attempt, item_index",
                (now, *values),
            ).fetchall()
            dispatches = []
            for execution_id, node_id, attempt, index in found_items:
                info = tx.info(execution_id)
                if info is not None:
                    queue = tx.version(info.version_id).workflow.nodes[node_id].queue
                    dispatches.append(Dispatch(execution_id, node_id, int(attempt), queue, index))
            tx.enqueue(tx.caches.with_priorities(dispatches))
    return tx.dispatches
