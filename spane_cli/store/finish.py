"""An execution's end once its last node is terminal: its status (decided by the scheduler),
its output (the workflow's `output:` template, or the leaves' outputs), its error, and the
note that a sub-workflow's parent node must hear of it."""

from __future__ import annotations

from typing import Any

from spane_cli import scheduler
from spane_cli.states import OPEN_EXECUTION, ExecutionStatus, NodeStatus
from spane_cli.store import events, pools
from spane_cli.store.models import Execution, NodeRun
from spane_cli.store.tx import EndedChild, Tx
from spane_cli.store.versions import LoadedVersion
from spane_cli.text import first_line


def finish_execution(tx: Tx, execution_id: str, version: LoadedVersion) -> None:
    execution = Execution.get_by_id(execution_id)
    if execution.status not in OPEN_EXECUTION:
        return
    rows = list(
        NodeRun.select(NodeRun.node_id, NodeRun.status, NodeRun.output, NodeRun.error).where(
            NodeRun.execution == execution_id
        )
    )
    statuses = {row.node_id: NodeStatus(row.status) for row in rows}
    result = scheduler.execution_result(version.workflow, statuses) or ExecutionStatus.FAILED
    error: str | None = None
    output: Any = None
    if result == ExecutionStatus.FAILED:
        error = _failure(version, rows)
    else:
        # Jinja2 is imported only when an execution finishes: read-only commands start faster.
        from spane_cli.workflow.expressions import ExpressionError

        try:
            output = _execution_output(version, execution.input, rows, result)
        except ExpressionError as exc:
            result, error = ExecutionStatus.FAILED, f"output: {exc}"
    changed = (
        Execution.update(status=result, output=output, error=error, finished_at=tx.now)
        .where((Execution.id == execution_id) & (Execution.status.in_(list(OPEN_EXECUTION))))
        .execute()
    )
    if changed != 1:
        return
    if version.workflow.max_active is not None:
        pools.release_execution(tx, execution_id)
    event_type = (
        events.EXECUTION_SUCCEEDED
        if result == ExecutionStatus.SUCCEEDED
        else events.EXECUTION_FAILED
    )
    tx.event(execution_id, None, event_type, {"error": error} if error else None)
    note_ended_child(tx, execution, result, output, error)


def note_ended_child(
    tx: Tx, execution: Execution, result: str, output: Any, error: str | None
) -> None:
    """A sub-workflow that ended tells its parent node, later in the same transaction."""
    if execution.parent_id and execution.parent_node_id:
        tx.ended_children.append(
            EndedChild(
                str(execution.id),
                str(execution.parent_id),
                str(execution.parent_node_id),
                result,
                output,
                error,
            )
        )


def _failure(version: LoadedVersion, rows: list[NodeRun]) -> str:
    nodes = version.workflow.nodes
    failed = [
        row
        for row in rows
        if row.status == NodeStatus.FAILED and not nodes[row.node_id].continue_on_fail
    ]
    if not failed:
        return "nodes were not run because their parents failed"
    # The main graph's failure first: an exit handler's is named only when it is the cause.
    failed.sort(key=lambda row: nodes[row.node_id].on_exit)
    what = "exit handler" if nodes[failed[0].node_id].on_exit else "node"
    error = f"{what} {failed[0].node_id!r} failed: {first_line(failed[0].error)}"
    if len(failed) > 1:
        error += f" (and {len(failed) - 1} more failed nodes)"
    return error


def _execution_output(
    version: LoadedVersion, workflow_input: Any, rows: list[NodeRun], result: ExecutionStatus
) -> Any:
    workflow = version.workflow
    if workflow.output is None:
        return scheduler.default_output(workflow, {row.node_id: row.output for row in rows})
    scope = {
        "input": workflow_input,
        "nodes": {
            row.node_id: {"output": row.output, "status": row.status, "error": row.error}
            for row in rows
        },
        # As nodes see it; an output is only rendered for an execution that did not fail.
        "workflow": {"name": workflow.name, "status": str(result), "failures": []},
    }
    from spane_cli.workflow.expressions import render_value

    return render_value(workflow.output, scope)
