"""The JSON shapes of SPEC §2: execution, node, dead letter, event."""

from __future__ import annotations

from typing import Any

from spane_cli.store.models import DeadLetter, Event, Execution, NodeRun, WorkflowVersion
from spane_cli.timeutil import iso
from spane_cli.workflow.model import node_priority


def node_view(row: NodeRun) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": row.status,
        "attempts": row.attempt,
        "output": row.output,
        "error": row.error,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
    }
    if row.items_total is not None:
        # `done` counts the items that succeeded; failed ones are in the node's error.
        view["items"] = {"total": row.items_total, "done": row.items_done - row.items_failed}
    return view


def execution_view(execution: Execution, with_nodes: bool = True) -> dict[str, Any]:
    version = WorkflowVersion.get_by_id(execution.version_id)
    view: dict[str, Any] = {
        "id": execution.id,
        "workflow": execution.workflow,
        "version": version.number,
        "status": execution.status,
        "input": execution.input,
        "output": execution.output,
        "error": execution.error,
        "created_at": iso(execution.created_at),
        "started_at": iso(execution.started_at),
        "finished_at": iso(execution.finished_at),
        "parent_id": execution.parent_id,
        # The schedule and fire time that made it; null for an execution started otherwise.
        "schedule": execution.schedule,
        "fire_time": iso(execution.fire_time),
    }
    if with_nodes:
        order = list(version.source["workflow"]["nodes"])
        rows = {
            row.node_id: row for row in NodeRun.select().where(NodeRun.execution == execution.id)
        }
        view["nodes"] = {node_id: node_view(rows[node_id]) for node_id in order if node_id in rows}
        # A node's priority is shown when it has one: the shape of SPEC §2 otherwise.
        source = version.source["workflow"]
        for node_id, node in view["nodes"].items():
            priority = node_priority(source, source["nodes"][node_id])
            if priority:
                node["priority"] = priority
    return view


def dead_letter_view(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "execution_id": letter.execution_id,
        "workflow": letter.workflow,
        "node_id": letter.node_id,
        "error": letter.error,
        "attempts": letter.attempts,
        "created_at": iso(letter.created_at),
        "replayed_at": iso(letter.replayed_at),
    }


def _readable_times(data: Any) -> Any:
    """Event data with its moments (`*_at`, `until`), stored as epoch seconds, in ISO 8601."""
    if not isinstance(data, dict):
        return data
    return {
        key: iso(value)
        if (key.endswith("_at") or key == "until")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        else value
        for key, value in data.items()
    }


def event_view(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "execution_id": event.execution_id,
        "node_id": event.node_id,
        "type": event.type,
        "data": _readable_times(event.data),
        "time": iso(event.created_at),
    }
