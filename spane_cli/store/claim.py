"""Claiming: a node attempt goes queued -> running for exactly one worker.

The guarded UPDATE names the attempt and the status it leaves, and the execution must be
pending or running: a duplicate, stale or late job, or one of a paused or ended execution,
claims nothing (a paused execution's nodes stay queued with their outbox rows until resume).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spane_cli.states import NodeStatus
from spane_cli.store import events, pools, sql
from spane_cli.store.records import ClaimedNode, ExecutionInfo
from spane_cli.store.tx import Tx
from spane_cli.store.versions import LoadedVersion


def claimed(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    node_id: str,
    attempt: int,
    parent_outputs: dict[str, Any],
    *,
    item: int | None = None,
    item_value: Any = None,
    worker: str | None = None,
    queued_at: float | None = None,
) -> ClaimedNode:
    """The claim handed to the worker that now owns this node attempt (or item)."""
    return ClaimedNode(
        execution_id=info.id,
        node_id=node_id,
        attempt=attempt,
        version=version,
        workflow_input=info.input,
        parent_outputs=parent_outputs,
        timeout_at=tx.deadlines.get(info.id),
        item=item,
        item_value=item_value,
        worker=worker,
        schedule=info.schedule,
        queued_at=queued_at,
    )


def parent_outputs(
    tx: Tx, execution_id: str, needs: Sequence[str], known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Outputs of the parents; a failed (continue_on_fail) or skipped parent hands on null."""
    outputs = {p: known[p] for p in needs if known and p in known}
    missing = [p for p in needs if p not in outputs]
    for member, values in sql.member_of(tx.database, missing):
        rows = tx.run(
            "SELECT node_id, status, output FROM node_run WHERE execution_id = ?"
            f" AND node_id {member}",
            (execution_id, *values),
        ).fetchall()
        for parent, status, output in rows:
            outputs[parent] = sql.loads(output) if status == NodeStatus.SUCCEEDED else None
    return outputs


def claim_nodes(tx: Tx, wanted: Sequence[tuple[str, str, int]], worker: str) -> list[ClaimedNode]:
    """Several (execution, node, attempt) claims, each guarded on its own; the stale ones are
    left out. In the order asked for; a job taken twice yields its claim once."""
    by_execution: dict[str, list[tuple[str, int]]] = {}
    for execution_id, node_id, attempt in wanted:
        by_execution.setdefault(execution_id, []).append((node_id, attempt))
    # A new execution's fixed fields are read inside the claim's transaction: one commit
    # fewer per execution, which small workflows notice.
    tx.caches.load_execution_infos(by_execution)
    # An execution this claim may start is locked (its row changes); claims in a running one
    # only read its deadline, so they do not queue behind its completions.
    starting = [e for e in by_execution if e not in tx.caches.seen_running]
    tx.lock_executions(starting)
    taken: dict[tuple[str, str], ClaimedNode] = {}
    for execution_id, nodes in by_execution.items():
        info = tx.caches.infos.get(execution_id)
        if info is None:
            continue
        for claim in _claim_in_execution(tx, info, nodes, worker):
            taken[(claim.execution_id, claim.node_id)] = claim
    return [taken.pop((e, n)) for e, n, _ in wanted if (e, n) in taken]


def _claim_in_execution(
    tx: Tx, info: ExecutionInfo, nodes: Sequence[tuple[str, int]], worker: str
) -> list[ClaimedNode]:
    execution_id = info.id
    version = tx.version(info.version_id)
    by_attempt: dict[int, list[str]] = {}
    for node_id, attempt in nodes:
        by_attempt.setdefault(attempt, []).append(node_id)
    taken: list[tuple[str, int]] = []
    queued_at: dict[str, float | None] = {}
    for attempt, node_ids in by_attempt.items():
        rows = tx.run(
            "UPDATE node_run SET status = 'running', started_at = ?, worker = ?"
            " WHERE execution_id = ? AND attempt = ? AND status = 'queued'"
            f" AND node_id IN ({sql.placeholders(len(node_ids))})"
            " AND EXISTS (SELECT 1 FROM execution WHERE id = ?"
            " AND status IN ('pending', 'running'))"
            # The deadline comes back with the claim: no statement of its own.
            " RETURNING node_id, (SELECT timeout_at FROM execution WHERE id = ?), queued_at",
            (tx.now, worker, execution_id, attempt, *node_ids, execution_id, execution_id),
        ).fetchall()
        taken += [(row[0], attempt) for row in rows]
        queued_at.update((row[0], row[2]) for row in rows)
        if rows:
            tx.deadlines.setdefault(execution_id, rows[0][1])
    nodes_by_id = version.workflow.nodes
    if (
        taken
        and version.workflow.max_active is not None
        and execution_id not in tx.caches.seen_running
        and not pools.start_slot(tx, execution_id, version.workflow)
    ):
        _park(tx, execution_id, taken)  # `max_active` executions are open: it waits to start
        return []
    if any(pools.slot_pool(nodes_by_id[node_id]) for node_id, _ in taken):
        taken = _take_slots(tx, version, execution_id, taken, worker)
    if not taken:
        return []
    tx.run(
        "DELETE FROM outbox WHERE execution_id = ? AND item IS NULL"
        f" AND node_id IN ({sql.placeholders(len(taken))})",
        (execution_id, *(node_id for node_id, _ in taken)),
    )
    start_execution(tx, execution_id)
    attempts = {attempt: {"attempt": attempt} for attempt in by_attempt}  # encoded once
    for node_id, attempt in taken:
        tx.event(execution_id, node_id, events.NODE_STARTED, attempts[attempt])
    needed = sorted({p for node_id, _ in taken for p in nodes_by_id[node_id].needs})
    outputs = parent_outputs(tx, execution_id, needed) if needed else {}
    return [
        claimed(
            tx,
            info,
            version,
            node_id,
            attempt,
            {p: outputs[p] for p in nodes_by_id[node_id].needs if p in outputs},
            worker=worker,
            queued_at=queued_at.get(node_id),
        )
        for node_id, attempt in taken
    ]


def _take_slots(
    tx: Tx,
    version: LoadedVersion,
    execution_id: str,
    taken: list[tuple[str, int]],
    worker: str,
) -> list[tuple[str, int]]:
    """The claimed nodes that got a slot of their pool; the others go back to `queued` with no
    job (pools.acquire records their wait), so no worker process waits for a slot."""
    workflow = version.workflow
    kept: list[tuple[str, int]] = []
    for node_id, attempt in taken:
        node = workflow.nodes[node_id]
        pool = pools.slot_pool(node)
        if pool is None or pools.acquire(
            tx, pool, workflow.pools.get(pool), execution_id, node_id, attempt, node.queue,
            worker=worker,
        ):  # fmt: skip
            kept.append((node_id, attempt))
            continue
        _park(tx, execution_id, [(node_id, attempt)])
    return kept


def _park(tx: Tx, execution_id: str, claims: Sequence[tuple[str, int]]) -> None:
    """Claims given back: `queued` again, with no job (a waiter row says why)."""
    for node_id, attempt in claims:
        tx.run(
            "UPDATE node_run SET status = 'queued', started_at = NULL, worker = NULL"
            " WHERE execution_id = ? AND node_id = ? AND attempt = ? AND status = 'running'",
            (execution_id, node_id, attempt),
        )
        tx.run(
            "DELETE FROM outbox WHERE execution_id = ? AND node_id = ? AND item IS NULL",
            (execution_id, node_id),
        )


def start_execution(tx: Tx, execution_id: str) -> None:
    """pending -> running, with its event, the first time one of its nodes is claimed."""
    if execution_id in tx.caches.seen_running:
        return
    started = tx.run(
        "UPDATE execution SET status = 'running', started_at = ?"
        " WHERE id = ? AND status = 'pending'",
        (tx.now, execution_id),
    ).rowcount
    if started:
        tx.event(execution_id, None, events.EXECUTION_STARTED)
    # Remembered only once committed (a rolled-back start must be tried again): see Store.
    tx.started.append(execution_id)


def claim_ready_child(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    node_id: str,
    finished_outputs: Mapping[str, Any] | None,
) -> None:
    """pending -> running for the one child a worker takes in the transaction that made it
    ready: a chain costs one transaction and no Redis round trip per node."""
    if tx.claim_for is None:
        return
    taken = tx.run(
        "UPDATE node_run SET status = 'running', attempt = 1, queued_at = ?, started_at = ?,"
        " worker = ?, waiting_on = 0"
        " WHERE execution_id = ? AND node_id = ? AND status = 'pending'",
        (tx.now, tx.now, tx.claim_for[0], info.id, node_id),
    ).rowcount
    if taken != 1:
        return
    tx.event(info.id, node_id, events.NODE_QUEUED, {"attempt": 1})
    tx.event(info.id, node_id, events.NODE_STARTED, {"attempt": 1})
    needs = version.workflow.nodes[node_id].needs
    tx.next_claim = claimed(
        tx,
        info,
        version,
        node_id,
        1,
        parent_outputs(tx, info.id, needs, finished_outputs),
        worker=tx.claim_for[0],
        queued_at=tx.now,
    )
