"""Pools as `spane pool list` and `spane get` show them: size, holders, waiters. A read."""

from __future__ import annotations

from typing import Any

from spane_cli.store.models import Pool, PoolSlot, PoolWaiter
from spane_cli.store.pools import EXECUTION, NO_ITEM, PoolState
from spane_cli.timeutil import iso

_SHOWN_HOLDERS = 5


def _item(value: int) -> int | None:
    return None if value == NO_ITEM else int(value)


def pool_list() -> list[dict[str, Any]]:
    """Every pool, by name: its size and where it comes from, holders and waiters."""
    holders: dict[str, list[dict[str, Any]]] = {}
    for slot in PoolSlot.select().order_by(PoolSlot.acquired_at):
        holders.setdefault(slot.pool, []).append(
            {
                "execution_id": slot.execution_id,
                "node_id": slot.node_id,
                "item": _item(slot.item),
                "worker": slot.worker,
                "since": iso(slot.acquired_at),
            }
        )
    waiters: dict[str, list[dict[str, Any]]] = {}
    for waiter in PoolWaiter.select().order_by(PoolWaiter.since, PoolWaiter.id):
        waiters.setdefault(waiter.pool, []).append(
            {
                "execution_id": waiter.execution_id,
                "node_id": waiter.node_id,
                "item": _item(waiter.item),
                "since": iso(waiter.since),
                "woken": bool(waiter.woken),
            }
        )
    shown = []
    for pool in Pool.select().order_by(Pool.name):
        state = PoolState(pool.size, pool.declared, pool.held)
        shown.append(
            {
                "name": pool.name,
                "size": state.limit,
                "set_by": "cli" if pool.size is not None else "workflow",
                "holders": holders.get(pool.name, []),
                "waiters": waiters.get(pool.name, []),
            }
        )
    return shown


def holder_names(holders: list[dict[str, Any]]) -> str:
    """`abcd1234/node[3], ...`: who holds a pool, in a line."""
    names = [
        h["execution_id"][:8]
        + (f"/{h['node_id']}" if h["node_id"] else "")
        + (f"[{h['item']}]" if h["item"] is not None else "")
        for h in holders[:_SHOWN_HOLDERS]
    ]
    more = len(holders) - _SHOWN_HOLDERS
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def pool_waits(execution_id: str) -> dict[str, str]:
    """node id -> why it waits on its pool, for the nodes (or items) of the execution that
    wait for a slot."""
    waiting = list(PoolWaiter.select().where(PoolWaiter.execution_id == execution_id))
    if not waiting:
        return {}
    names = {w.pool for w in waiting}
    pools = {p.name: p for p in Pool.select().where(Pool.name.in_(list(names)))}
    holders: dict[str, list[dict[str, Any]]] = {}
    for slot in PoolSlot.select().where(PoolSlot.pool.in_(list(names))):
        holders.setdefault(slot.pool, []).append(
            {"execution_id": slot.execution_id, "node_id": slot.node_id, "item": _item(slot.item)}
        )
    reasons: dict[str, str] = {}
    for waiter in waiting:
        pool = pools.get(waiter.pool)
        limit = PoolState(pool.size, pool.declared, pool.held).limit if pool else None
        if limit is None:
            reasons[waiter.node_id] = (
                f"pool {waiter.pool} has no size (spane pool set {waiter.pool} N)"
            )
            continue
        held = holders.get(waiter.pool, [])
        if waiter.node_id == EXECUTION:
            workflow = waiter.pool.removeprefix("workflow:")
            reasons[EXECUTION] = (
                f"max_active {limit} of workflow {workflow} reached"
                f" (open: {holder_names(held) or 'none yet'})"
            )
            continue
        reasons[waiter.node_id] = (
            f"pool {waiter.pool} full (holders: {holder_names(held) or 'none yet'})"
        )
    return reasons
