"""Concurrency pools: a node (or foreach item) with a `pool:` or `mutex:` runs only while it
holds one of the pool's slots, counted in the database across every worker; a workflow's
`max_active` is a pool `workflow:NAME` whose slots its open executions hold.

A slot is taken in the claim's transaction, after the node row (the lock order of tx.py ends
with the pool rows), and freed in the transaction that moves the node out of `running`: its
end, its retry, its loss (the pool rows of freed slots are updated just before the commit).
A claim that finds the pool full puts the node back to `queued` with no job and a
`pool_waiter` row, so it holds no worker process; the transaction that frees a slot wakes the
oldest waiter (`woken`: the slot is kept for it, and its job is written to the outbox in that
same transaction). `sweep` frees what a path that ends nodes without a report left behind (a
`fail_fast` skip of a waiter, a hand-edited row), so nothing leaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import peewee

from spane_cli.store import events
from spane_cli.store.records import Dispatch, dispatch_of
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.workflow.model import Node, Workflow

NO_ITEM = -1  # the item column of a node's own slot or wait
EXECUTION = ""  # the node_id column of an execution's own slot or wait (`max_active`)


@dataclass(frozen=True)
class PoolState:
    size: int | None  # the operator's setting
    declared: int | None  # the last claiming workflow's declaration
    held: int

    @property
    def limit(self) -> int | None:
        """The operator's setting wins over what a workflow file declares."""
        return self.size if self.size is not None else self.declared


def slot_pool(node: Node) -> str | None:
    """The pool a node's run takes a slot of: a foreach node's items take them, not the node."""
    return node.pool if node.foreach is None else None


def item_pool(node: Node) -> str | None:
    """The pool each foreach item of the node takes a slot of."""
    return node.pool if node.foreach is not None else None


def _lock(tx: Tx, pool: str, declared: int | None = None) -> PoolState:
    """The pool's row, made if missing and locked (last in the lock order)."""
    tx.run(
        "INSERT INTO pool (name, size, declared, held) VALUES (?, NULL, ?, 0)"
        " ON CONFLICT (name) DO NOTHING",
        (pool, declared),
    )
    postgres = isinstance(tx.database, peewee.PostgresqlDatabase)
    size, known, held = tx.run(
        "SELECT size, declared, held FROM pool WHERE name = ?"
        + (" FOR UPDATE" if postgres else ""),
        (pool,),
    ).fetchone()
    if declared is not None and declared != known:
        tx.run("UPDATE pool SET declared = ? WHERE name = ?", (declared, pool))
        known = declared
    return PoolState(size, known, int(held))


def acquire(
    tx: Tx,
    pool: str,
    declared: int | None,
    execution_id: str,
    node_id: str,
    attempt: int,
    queue: str,
    item: int = NO_ITEM,
    worker: str | None = None,
    since: float | None = None,
) -> bool:
    """Take a slot for the node (or item, or with node_id EXECUTION the execution) this
    transaction just claimed; False when the pool is full, and then the caller puts the claim
    back and it waits here, in line by `since` (default now)."""
    state = _lock(tx, pool, declared)
    kept_for_others = tx.run(
        "SELECT COUNT(*) FROM pool_waiter WHERE pool = ? AND woken = ?"
        " AND NOT (execution_id = ? AND node_id = ? AND item = ?)",
        (pool, True, execution_id, node_id, item),
    ).fetchone()[0]
    key = (execution_id, node_id, item)
    if state.limit is not None and state.held + int(kept_for_others) < state.limit:
        tx.run("UPDATE pool SET held = held + 1 WHERE name = ?", (pool,))
        tx.run(
            "INSERT INTO pool_slot (pool, execution_id, node_id, item, worker, acquired_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (pool, *key, worker, tx.now),
        )
        tx.run("DELETE FROM pool_waiter WHERE execution_id = ? AND node_id = ? AND item = ?", key)
        return True
    # A woken waiter that lost its slot keeps its place in the line.
    again = tx.run(
        "UPDATE pool_waiter SET woken = ?, attempt = ?, queue = ?"
        " WHERE execution_id = ? AND node_id = ? AND item = ?",
        (False, attempt, queue, *key),
    ).rowcount
    if not again:
        tx.run(
            "INSERT INTO pool_waiter"
            " (pool, execution_id, node_id, item, attempt, queue, since, woken)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (pool, *key, attempt, queue, tx.now if since is None else since, False),
        )
        data = {"attempt": attempt, "pool": pool, **({"item": item} if item >= 0 else {})}
        tx.event(execution_id, node_id or None, events.NODE_POOL_WAIT, data)
    return False


def release(
    tx: Tx, execution_id: str, node_id: str, item: int = NO_ITEM, worker: str | None = None
) -> None:
    """Free the slot the node (or item) holds, if any (only if `worker` holds it, when given:
    a late report must not free the slot of the run that replaced it), and wake who waits."""
    owner = " AND worker = ?" if worker is not None else ""
    freed = tx.run(
        f"DELETE FROM pool_slot WHERE execution_id = ? AND node_id = ? AND item = ?{owner}"
        " RETURNING pool",
        (execution_id, node_id, item, *((worker,) if worker is not None else ())),
    ).fetchall()
    for (pool,) in freed:
        _free(tx, pool, 1)


def _free(tx: Tx, pool: str, count: int) -> None:
    """Count slots freed (or a kept slot given up: 0) for `_settle_freed`, at the commit."""
    if not tx.freed_slots:
        tx.before_commit.append(partial(_settle_freed, tx))
    tx.freed_slots[pool] = tx.freed_slots.get(pool, 0) + count


def _settle_freed(tx: Tx) -> None:
    for pool in sorted(tx.freed_slots):
        count = tx.freed_slots[pool]
        _lock(tx, pool)
        tx.run(
            "UPDATE pool SET held = CASE WHEN held > ? THEN held - ? ELSE 0 END WHERE name = ?",
            (count, count, pool),
        )
        wake(tx, pool)
    tx.freed_slots.clear()


def release_nodes(tx: Tx, workflow: Workflow, execution_id: str, node_ids: Iterable[str]) -> None:
    """`release` for the nodes among `node_ids` that take slots (decided from the model, so a
    workflow without pools pays nothing)."""
    nodes = workflow.nodes
    for node_id in node_ids:
        node = nodes.get(node_id)
        if node is not None and slot_pool(node) is not None:
            release(tx, execution_id, node_id)


def wake(tx: Tx, pool: str) -> None:
    """Queue the oldest waiters the free slots have room for (the pool row is locked)."""
    size, declared, held = tx.run(
        "SELECT size, declared, held FROM pool WHERE name = ?", (pool,)
    ).fetchone()
    limit = PoolState(size, declared, int(held)).limit
    if limit is None:
        return
    kept = tx.run(
        "SELECT COUNT(*) FROM pool_waiter WHERE pool = ? AND woken = ?", (pool, True)
    ).fetchone()[0]
    free = limit - int(held) - int(kept)
    if free <= 0:
        return
    waiters = tx.run(
        "SELECT id, execution_id, node_id, item, attempt, queue FROM pool_waiter"
        " WHERE pool = ? AND woken = ? ORDER BY since, id LIMIT ?",
        (pool, False, free),
    ).fetchall()
    for waiter_id, execution_id, node_id, item, attempt, queue in waiters:
        tx.run("UPDATE pool_waiter SET woken = ? WHERE id = ?", (True, waiter_id))
        if node_id == EXECUTION:
            tx.enqueue(_parked_nodes(tx, execution_id))
            continue
        index = None if item == NO_ITEM else int(item)
        woken = Dispatch(execution_id, node_id, int(attempt), queue, index)
        tx.enqueue(tx.caches.with_priorities([woken]))


def _parked_nodes(tx: Tx, execution_id: str) -> list[Dispatch]:
    """Jobs for the queued nodes of an execution that waited to start (they have none)."""
    info = tx.info(execution_id)
    if info is None:
        return []
    nodes = tx.version(info.version_id).workflow.nodes
    rows = tx.run(
        "SELECT node_id, attempt FROM node_run WHERE execution_id = ? AND status = 'queued'"
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.execution_id = node_run.execution_id"
        " AND o.node_id = node_run.node_id AND o.item IS NULL)",
        (execution_id,),
    ).fetchall()
    return [dispatch_of(execution_id, nodes[n], int(a)) for n, a in rows if n in nodes]


def execution_pool(workflow: Workflow) -> str | None:
    """The pool of a workflow's `max_active`: one slot per open execution. (A name no
    `pool:` can take: those have no colon.)"""
    return f"workflow:{workflow.name}" if workflow.max_active is not None else None


def start_slot(tx: Tx, execution_id: str, workflow: Workflow) -> bool:
    """Whether the execution holds (or now took) a slot of its workflow's `max_active`;
    False: it waits, in line by its creation time."""
    pool = execution_pool(workflow)
    if pool is None:
        return True
    held = tx.run(
        "SELECT 1 FROM pool_slot WHERE execution_id = ? AND node_id = ? AND item = ?",
        (execution_id, EXECUTION, NO_ITEM),
    ).fetchone()
    if held is not None:
        return True
    (created_at,) = tx.run(
        "SELECT created_at FROM execution WHERE id = ?", (execution_id,)
    ).fetchone()
    return acquire(
        tx, pool, workflow.max_active, execution_id, EXECUTION, 0, "", since=float(created_at)
    )


def release_execution(tx: Tx, execution_id: str) -> None:
    """An execution that ended frees every slot it or its nodes hold, and its waits."""
    freed = tx.run(
        "DELETE FROM pool_slot WHERE execution_id = ? RETURNING pool", (execution_id,)
    ).fetchall()
    gone = tx.run(
        "DELETE FROM pool_waiter WHERE execution_id = ? RETURNING pool", (execution_id,)
    ).fetchall()
    for (pool,) in freed:
        _free(tx, pool, 1)
    for (pool,) in gone:
        _free(tx, pool, 0)  # a slot kept for a waiter that is gone goes to the next one


def set_size(caches: Caches, pool: str, size: int | None, now: float) -> list[Dispatch]:
    """The operator's size (None: back to the workflows' declaration); waiters it makes room
    for are queued in the same transaction. A removed pool nobody uses loses its row."""
    with transaction(caches, now) as tx:
        _lock(tx, pool)
        tx.run("UPDATE pool SET size = ? WHERE name = ?", (size, pool))
        wake(tx, pool)
        if size is None:
            tx.run(
                "DELETE FROM pool WHERE name = ? AND held = 0"
                " AND NOT EXISTS (SELECT 1 FROM pool_waiter WHERE pool = ?)",
                (pool, pool),
            )
    return tx.dispatches


_ORPHAN_SLOTS = (
    "DELETE FROM pool_slot WHERE pool = ? AND NOT ("
    "(node_id = '' AND EXISTS (SELECT 1 FROM execution e WHERE e.id = pool_slot.execution_id"
    " AND e.status IN ('pending', 'running', 'paused')))"
    " OR (node_id <> '' AND item = -1 AND EXISTS (SELECT 1 FROM node_run n"
    " WHERE n.execution_id = pool_slot.execution_id"
    " AND n.node_id = pool_slot.node_id AND n.status = 'running'))"
    " OR (item >= 0 AND EXISTS (SELECT 1 FROM node_item i"
    " WHERE i.execution_id = pool_slot.execution_id AND i.node_id = pool_slot.node_id"
    " AND i.item_index = pool_slot.item AND i.status = 'running')))"
)
_ORPHAN_WAITERS = (
    "DELETE FROM pool_waiter WHERE pool = ? AND NOT ("
    # An execution reopened by `spane retry` may wait for max_active while `running`.
    "(node_id = '' AND EXISTS (SELECT 1 FROM execution e WHERE e.id = pool_waiter.execution_id"
    " AND e.status IN ('pending', 'running', 'paused')))"
    " OR (node_id <> '' AND item = -1 AND EXISTS (SELECT 1 FROM node_run n"
    " WHERE n.execution_id = pool_waiter.execution_id AND n.node_id = pool_waiter.node_id"
    " AND n.status = 'queued' AND n.attempt = pool_waiter.attempt))"
    " OR (item >= 0 AND EXISTS (SELECT 1 FROM node_item i"
    " WHERE i.execution_id = pool_waiter.execution_id AND i.node_id = pool_waiter.node_id"
    " AND i.item_index = pool_waiter.item AND i.status = 'queued')))"
)


def sweep(caches: Caches, now: float) -> list[Dispatch]:
    """Slots whose node no longer runs and waits whose node no longer waits (a cancel, a
    deadline, a hand-edited row) are dropped, `held` is counted again, and the freed room
    wakes waiters. One cheap read when no pool is in use."""
    busy = caches.database.execute_sql(
        "SELECT name FROM pool WHERE held > 0"
        " OR EXISTS (SELECT 1 FROM pool_waiter w WHERE w.pool = pool.name)"
    ).fetchall()
    dispatches: list[Dispatch] = []
    for (pool,) in busy:
        with transaction(caches, now) as tx:
            _lock(tx, pool)
            tx.run(_ORPHAN_SLOTS, (pool,))
            tx.run(_ORPHAN_WAITERS, (pool,))
            tx.run(
                "UPDATE pool SET held = (SELECT COUNT(*) FROM pool_slot WHERE pool = ?)"
                " WHERE name = ?",
                (pool, pool),
            )
            wake(tx, pool)
        dispatches += tx.dispatches
    return dispatches
