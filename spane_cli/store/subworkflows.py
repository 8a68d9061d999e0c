"""Sub-workflows: a `workflow` node starts a child execution and waits for it (holding no
worker); when the child ends, its parent node succeeds with the child's output or fails."""

from __future__ import annotations

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import events
from spane_cli.store.create import insert_execution
from spane_cli.store.models import NodeRun
from spane_cli.store.records import MAX_DEPTH, ExecutionInfo, Report, StaleReport
from spane_cli.store.tx import EndedChild, Tx
from spane_cli.store.versions import LoadedVersion


def start_child(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    node_id: str,
    attempt: int,
    report: Report,
    worker: str | None = None,
) -> str | None:
    """running -> waiting on a new child execution; returns why it cannot start, if so."""
    reference = report.child_reference or ""
    child_version_id = version.refs.get(reference)
    if child_version_id is None:
        return f"sub-workflow {reference!r} was not registered with this workflow"
    if info.depth + 1 >= MAX_DEPTH:
        return f"sub-workflows nest deeper than {MAX_DEPTH} levels"
    child_id = insert_execution(
        tx, child_version_id, report.child_input, parent=(info.id, node_id), depth=info.depth + 1
    )
    guard = (
        (NodeRun.execution == info.id)
        & (NodeRun.node_id == node_id)
        & (NodeRun.attempt == attempt)
        & (NodeRun.status == NodeStatus.RUNNING)
    )
    if worker is not None:
        guard &= NodeRun.worker == worker
    changed = (
        NodeRun.update(status=NodeStatus.WAITING, child_execution_id=child_id, due_at=None)
        .where(guard)
        .execute()
    )
    if changed != 1:
        raise StaleReport()  # roll back the child just created
    tx.event(info.id, node_id, events.NODE_WAITING, {"child_execution": child_id})
    return None


def parent_report(ended: EndedChild) -> tuple[int, Report] | None:
    """(the parent node's attempt, what to record for it), or None when it waits no more."""
    parent = NodeRun.get_or_none(
        (NodeRun.execution == ended.parent_id)
        & (NodeRun.node_id == ended.parent_node_id)
        & (NodeRun.child_execution_id == ended.execution_id)
    )
    if parent is None or parent.status != NodeStatus.WAITING:
        return None
    if ended.status == ExecutionStatus.SUCCEEDED:
        return parent.attempt, Report("succeeded", output=ended.output)
    error = f"sub-workflow execution {ended.execution_id} {ended.status}: {ended.error or ''}"
    return parent.attempt, Report("failed", error=error)
