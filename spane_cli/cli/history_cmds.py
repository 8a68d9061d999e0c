"""`spane events EXEC_ID` and `spane logs EXEC_ID`: history, then live with --follow."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from spane_cli.cli.services import store_only
from spane_cli.config import OutputFormat

ExecId = Annotated[str, typer.Argument(help="The execution id.", metavar="EXEC_ID")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")]
POLL_SECONDS = 0.3


def _follow_rows(
    execution_id: str, fetch: Callable[[int], list[Any]], follow: bool
) -> Iterator[Any]:
    """Rows after the last id seen; with `follow`, until the execution ends (then drain)."""
    from spane_cli.states import TERMINAL_EXECUTION
    from spane_cli.store.models import Execution

    last_id = 0
    while True:
        ended = (
            Execution.select(Execution.status).where(Execution.id == execution_id).scalar()
            in TERMINAL_EXECUTION
        )
        rows = fetch(last_id)
        for row in rows:
            last_id = row.id
            yield row
        if not follow or (ended and not rows):
            return
        if not rows:
            time.sleep(POLL_SECONDS)


def events(ctx: typer.Context, execution_id: ExecId, follow: Follow = False) -> None:
    """The events of an execution in order. -o json prints NDJSON (one object a line)."""
    from spane_cli.store.models import Event
    from spane_cli.store.views import event_view

    current, store = store_only(ctx)
    store.require_execution(execution_id)

    def fetch(after: int) -> list[Any]:
        return list(
            Event.select()
            .where((Event.execution_id == execution_id) & (Event.id > after))
            .order_by(Event.id)
            .limit(1000)
        )

    for row in _follow_rows(execution_id, fetch, follow):
        view = event_view(row)
        if current.output is OutputFormat.JSON:
            sys.stdout.write(json.dumps(view, default=str) + "\n")
        elif current.output is OutputFormat.YAML:
            from spane_cli.cli.render import dump_yaml

            sys.stdout.write("---\n" + dump_yaml(view))
        else:
            sys.stdout.write(format_event(view) + "\n")
        sys.stdout.flush()


def format_event(view: dict[str, Any]) -> str:
    data = view.get("data") or {}
    details = " ".join(f"{k}={v}" for k, v in data.items() if v is not None)
    node = f" {view['node_id']}" if view.get("node_id") else ""
    return f"{view['time']} {view['type']}{node}" + (f" {details}" if details else "")


def logs(
    ctx: typer.Context,
    execution_id: ExecId,
    node: Annotated[
        str | None, typer.Option("--node", help="Only this node.", metavar="ID")
    ] = None,
    follow: Follow = False,
) -> None:
    """Captured output of the nodes (stdout and stderr of shell nodes, python logging).
    -o json prints NDJSON: {execution_id, node_id, attempt, time, text}."""
    from spane_cli.store.models import NodeLog
    from spane_cli.timeutil import iso

    current, store = store_only(ctx)
    execution = store.require_execution(execution_id)
    if node is not None:
        version = store.versions.get(execution.version_id)
        if node not in version.workflow.nodes:
            from spane_cli.errors import NotFound

            raise NotFound(f"execution {execution_id} has no node {node!r}")

    def fetch(after: int) -> list[Any]:
        query = NodeLog.select().where(
            (NodeLog.execution_id == execution_id) & (NodeLog.id > after)
        )
        if node is not None:
            query = query.where(NodeLog.node_id == node)
        return list(query.order_by(NodeLog.id).limit(500))

    for row in _follow_rows(execution_id, fetch, follow):
        if current.output is OutputFormat.JSON:
            record = {
                "execution_id": row.execution_id,
                "node_id": row.node_id,
                "attempt": row.attempt,
                "time": iso(row.created_at),
                "text": row.text,
            }
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            prefix = "" if node else f"[{row.node_id}#{row.attempt}] "
            for line in row.text.splitlines():
                sys.stdout.write(f"{prefix}{line}\n")
        sys.stdout.flush()
