"""Stalled executions: running, with pending nodes, but nothing queued, running, waiting or
retrying, and no node finished for a while. No transition leaves one behind (each is one
transaction), but a bug, a hand-edited row or a restored backup can; the reconciler then
asks the scheduler's `plan` what the snapshot decides and applies it, as a completion would
have."""

from __future__ import annotations

from spane_cli import scheduler
from spane_cli.states import NodeStatus
from spane_cli.store import cascade, finish, sql
from spane_cli.store.records import Dispatch
from spane_cli.store.tx import Caches, Tx, transaction

_STALLED = (
    "SELECT e.id FROM execution e WHERE e.status = 'running'"
    " AND EXISTS (SELECT 1 FROM node_run n WHERE n.execution_id = e.id AND n.status = 'pending')"
    " AND NOT EXISTS (SELECT 1 FROM node_run n WHERE n.execution_id = e.id"
    " AND (n.status IN ('queued', 'running', 'waiting', 'retrying') OR n.finished_at > ?))"
    " LIMIT 50"
)


def repair_stalled(caches: Caches, quiet_since: float, now: float) -> list[Dispatch]:
    """Apply `plan` to executions stalled since before `quiet_since`; the jobs to enqueue."""
    # A plain read first: most ticks find nothing, and must not pay for a write transaction.
    stalled = [row[0] for row in sql.run(caches.database, _STALLED, (quiet_since,)).fetchall()]
    dispatches: list[Dispatch] = []
    for execution_id in stalled:
        with transaction(caches, now) as tx:
            _repair(tx, execution_id, quiet_since)
        dispatches += tx.dispatches
    return dispatches


def _repair(tx: Tx, execution_id: str, quiet_since: float) -> None:
    tx.lock_executions([execution_id])
    info = tx.info(execution_id)
    still = tx.run(_STALLED.replace("LIMIT 50", "AND e.id = ?"), (quiet_since, execution_id))
    if info is None or still.fetchone() is None:
        return  # it moved on meanwhile
    remaining, decided = apply_plan(tx, execution_id, why={"repaired": True})
    if remaining is not None and remaining <= 0 and decided.finished is not None:
        finish.finish_execution(tx, execution_id, tx.version(info.version_id))


def apply_plan(
    tx: Tx, execution_id: str, why: dict[str, object] | None = None
) -> tuple[int | None, scheduler.Plan]:
    """Decide the execution again from a snapshot of its node rows (the scheduler's `plan`)
    and apply it with the code a completion applies its cascade with: settle what is skipped
    or upstream_failed, queue what is ready. Returns the execution's remaining count after
    the settled nodes, and the plan. The caller holds the execution's lock."""
    info = tx.info(execution_id)
    assert info is not None
    version = tx.version(info.version_id)
    rows = tx.run(
        "SELECT node_id, status, chosen FROM node_run WHERE execution_id = ?", (execution_id,)
    ).fetchall()
    statuses = {node_id: NodeStatus(status) for node_id, status, _ in rows}
    chosen = {
        node_id: sql.loads(text)
        for node_id, status, text in rows
        if status == NodeStatus.SUCCEEDED and text is not None
    }
    decided = scheduler.plan(version.workflow, statuses, chosen)
    rows_port = cascade.NodeRows(tx, execution_id, why=why)
    settled = len(rows_port.settle(NodeStatus.SKIPPED, list(decided.skipped)))
    settled += len(rows_port.settle(NodeStatus.UPSTREAM_FAILED, list(decided.upstream_failed)))
    if decided.ready:
        cascade.queue_ready(tx, info, version, list(decided.ready), None, None)
    remaining = tx.run(
        "UPDATE execution SET remaining_nodes = remaining_nodes - ? WHERE id = ?"
        " RETURNING remaining_nodes",
        (settled, execution_id),
    ).fetchone()
    return (None if remaining is None else int(remaining[0])), decided
