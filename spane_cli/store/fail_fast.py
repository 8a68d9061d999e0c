"""A workflow's `fail_fast`: in the transaction where a node of the main graph fails for good,
every node of the main graph that has not started (pending, or queued with its job not yet
claimed) is skipped, so nothing new starts. Nodes already running, waiting or retrying are left
to finish; exit handlers are not touched, and the caller's cascade decides them as usual."""

from __future__ import annotations

from spane_cli import scheduler
from spane_cli.states import NodeStatus
from spane_cli.store import events, sql
from spane_cli.store.tx import Tx
from spane_cli.store.versions import LoadedVersion

_REASON = {"reason": "fail_fast"}


def stop_main_graph(
    tx: Tx, execution_id: str, version: LoadedVersion, failed_node: str
) -> dict[str, scheduler.ParentState]:
    """Skip the main graph's nodes that have not started; returns them, for the cascade."""
    workflow = version.workflow
    exits = sorted(workflow.exit_nodes)
    spared = f" AND node_id NOT IN ({sql.placeholders(len(exits))})" if exits else ""
    rows = tx.run(
        "UPDATE node_run SET status = 'skipped', finished_at = ?, waiting_on = 0, due_at = NULL,"
        " worker = NULL WHERE execution_id = ? AND status IN ('pending', 'queued')"
        f"{spared} RETURNING node_id",
        (tx.now, execution_id, *exits),
    ).fetchall()
    stopped = sorted(row[0] for row in rows)
    for member, values in sql.member_of(tx.database, stopped):
        tx.run(
            f"DELETE FROM outbox WHERE execution_id = ? AND item IS NULL AND node_id {member}",
            (execution_id, *values),
        )
    data = {**_REASON, "failed_node": failed_node}
    for node_id in stopped:
        tx.event(execution_id, node_id, events.NODE_SKIPPED, data)
    return {node_id: scheduler.ParentState(NodeStatus.SKIPPED) for node_id in stopped}
