"""Sub-workflows: a `workflow` node (or one foreach item of it) starts a child execution and
waits for it (holding no worker); when the child ends, however it ends, the waiting node or
item succeeds with the child's output or fails with the child's status and error.

The child's input is the parent's rendered `input:` with the child's declared defaults
filled in; a missing required input, an unknown one or a value of the wrong type fails the
parent's node (or item) with one line naming the input, and no child is created."""

from __future__ import annotations

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import events
from spane_cli.store.create import insert_execution
from spane_cli.store.models import NodeRun
from spane_cli.store.records import MAX_DEPTH, ExecutionInfo, Report, StaleReport
from spane_cli.store.tx import EndedChild, Tx
from spane_cli.store.versions import LoadedVersion
from spane_cli.workflow.inputs import apply_inputs


def create_child(
    tx: Tx, info: ExecutionInfo, version: LoadedVersion, node_id: str, report: Report
) -> tuple[str | None, str | None]:
    """(the new child execution's id, None), or (None, why it cannot start)."""
    reference = report.child_reference or ""
    child_version_id = version.refs.get(reference)
    if child_version_id is None:
        return None, f"sub-workflow {reference!r} was not registered with this workflow"
    if info.depth + 1 >= MAX_DEPTH:
        return None, f"sub-workflows nest deeper than {MAX_DEPTH} levels"
    child = tx.version(child_version_id).workflow
    child_input, problems = apply_inputs(child.inputs, report.child_input)
    if problems:
        return None, f"sub-workflow {reference!r}: " + "; ".join(problems)
    child_id = insert_execution(
        tx, child_version_id, child_input, parent=(info.id, node_id), depth=info.depth + 1
    )
    return child_id, None


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
    child_id, failure = create_child(tx, info, version, node_id, report)
    if child_id is None:
        return failure
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


def child_result(ended: EndedChild) -> Report:
    """What a child's end means for whoever waits for it."""
    if ended.status == ExecutionStatus.SUCCEEDED:
        return Report("succeeded", output=ended.output)
    error = f"sub-workflow execution {ended.execution_id} {ended.status}"
    return Report("failed", error=f"{error}: {ended.error}" if ended.error else error)


def parent_report(ended: EndedChild) -> tuple[int, Report] | None:
    """(the parent node's attempt, what to record for it), or None when it waits no more
    (or when an item of it, not the node itself, waits for this child)."""
    parent = NodeRun.get_or_none(
        (NodeRun.execution == ended.parent_id)
        & (NodeRun.node_id == ended.parent_node_id)
        & (NodeRun.child_execution_id == ended.execution_id)
    )
    if parent is None or parent.status != NodeStatus.WAITING:
        return None
    return parent.attempt, child_result(ended)
