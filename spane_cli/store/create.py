"""Creating an execution: its row, one row per node, the entry nodes queued with their outbox
rows, and the events, all in one transaction."""

from __future__ import annotations

import uuid
from typing import Any

import peewee

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import events, sql
from spane_cli.store.models import Execution
from spane_cli.store.records import Dispatch, dispatch_of
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.timeutil import iso

# A new execution's node rows; the last four always start at 0.
_NODE_ROW_COLUMNS = (
    "execution_id",
    "node_id",
    "status",
    "attempt",
    "waiting_on",
    "queue",
    "queued_at",
    "attempt_offset",
    "lost_count",
    "items_done",
    "items_failed",
)


def insert_execution(
    tx: Tx,
    version_id: int,
    workflow_input: Any,
    *,
    idempotency_key: str | None = None,
    timeout: float | None = None,
    parent: tuple[str, str] | None = None,
    depth: int = 0,
    schedule: tuple[str, float] | None = None,
) -> str:
    """The rows of a new execution, inside `tx`; returns its id. `schedule`: the (name, fire
    time) that made it; a second execution for the same pair breaks the unique index."""
    workflow = tx.version(version_id).workflow
    execution_id = str(uuid.uuid4())
    limit = timeout if timeout is not None else workflow.timeout
    now = tx.now
    Execution.insert(
        id=execution_id,
        version=version_id,
        workflow=workflow.name,
        status=ExecutionStatus.PENDING,
        input=workflow_input,
        idempotency_key=idempotency_key,
        remaining_nodes=len(workflow.nodes),
        timeout_at=now + limit if limit else None,
        created_at=now,
        parent_id=parent[0] if parent else None,
        parent_node_id=parent[1] if parent else None,
        depth=depth,
        schedule=schedule[0] if schedule else None,
        fire_time=schedule[1] if schedule else None,
    ).execute()
    node_rows: list[tuple[Any, ...]] = []
    entry_dispatches: list[Dispatch] = []
    created: dict[str, Any] = {"workflow": workflow.name}
    if schedule:
        created.update(schedule=schedule[0], fire_time=iso(schedule[1]))
    tx.event(execution_id, None, events.EXECUTION_CREATED, created)
    for node in workflow.nodes.values():
        entry = not node.needs
        node_rows.append(
            (
                execution_id,
                node.id,
                str(NodeStatus.QUEUED if entry else NodeStatus.PENDING),
                1 if entry else 0,
                len(node.needs),
                node.queue,
                now if entry else None,
                0,
                0,
                0,
                0,
            )
        )
        if entry:
            tx.event(execution_id, node.id, events.NODE_QUEUED, {"attempt": 1})
            entry_dispatches.append(dispatch_of(execution_id, node, 1))
    sql.insert_rows(tx.database, "node_run", _NODE_ROW_COLUMNS, node_rows)
    tx.enqueue(entry_dispatches)
    return execution_id


def _existing(idempotency_key: str | None) -> str | None:
    if not idempotency_key:
        return None
    row = Execution.get_or_none(Execution.idempotency_key == idempotency_key)
    return None if row is None else str(row.id)


def create_execution(
    caches: Caches,
    version_id: int,
    workflow_input: Any,
    *,
    idempotency_key: str | None = None,
    timeout: float | None = None,
    now: float | None = None,
) -> tuple[str, bool, list[Dispatch]]:
    """(execution id, created?, dispatches). The same idempotency key gives the same id."""
    existing = _existing(idempotency_key)
    if existing is not None:
        return existing, False, []
    # The definition is loaded first, like the file was parsed before: created_at is the
    # moment the execution's rows are written, so its timings measure the run alone.
    caches.versions.get(version_id)
    try:
        with transaction(caches, now) as tx:
            execution_id = insert_execution(
                tx, version_id, workflow_input, idempotency_key=idempotency_key, timeout=timeout
            )
    except peewee.IntegrityError:
        # Two submitters with one key: the other one's row won the unique index.
        existing = _existing(idempotency_key)
        if existing is not None:
            return existing, False, []
        raise
    return execution_id, True, tx.dispatches
