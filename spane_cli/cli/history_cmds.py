"""`spane events EXEC_ID` and `spane logs EXEC_ID`: history, then live with --follow."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from spane_cli.cli.services import ExecId, store_only
from spane_cli.config import OutputFormat

Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")]


def events(ctx: typer.Context, execution_id: ExecId, follow: Follow = False) -> None:
    """The events of an execution in order. -o json prints NDJSON (one object a line). With
    --follow it exits as `spane watch` does: 0 succeeded, 1 failed, 5 cancelled."""
    from spane_cli.engine.waiting import follow_rows
    from spane_cli.store import queries
    from spane_cli.store.views import event_view

    current, store = store_only(ctx)
    store.require_execution(execution_id)

    def fetch(after: int) -> list[Any]:
        return queries.events_after(execution_id, after)

    for row in follow_rows(execution_id, fetch, follow):
        view = event_view(row)
        if current.output is OutputFormat.JSON:
            sys.stdout.write(json.dumps(view, default=str) + "\n")
        elif current.output is OutputFormat.YAML:
            from spane_cli.cli.render import dump_yaml

            sys.stdout.write("---\n" + dump_yaml(view))
        else:
            sys.stdout.write(format_event(view) + "\n")
        sys.stdout.flush()
    if follow:
        exit_as_watch_does(execution_id)


def exit_as_watch_does(execution_id: str) -> None:
    """After following an execution to its end: exit with its code, as `spane watch` does
    (0 succeeded, 1 failed, 5 cancelled)."""
    from spane_cli.cli.run_cmd import EXIT_BY_STATUS
    from spane_cli.errors import ExitCode
    from spane_cli.store import queries

    status = queries.execution_status(execution_id)
    raise typer.Exit(int(EXIT_BY_STATUS.get(status or "", ExitCode.FAILED)))


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
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", help="Stop following after this long (exit 124), e.g. 10m.", metavar="DUR"
        ),
    ] = None,
) -> None:
    """Captured output of the nodes (stdout and stderr of shell nodes, as it is written;
    python logging). Each line starts with [node#attempt], plus the item index and value of a
    foreach item. With --follow, exits as watch does: 0 succeeded, 1 failed, 5 cancelled, and
    124 when --timeout runs out first. -o json prints NDJSON: {execution_id, node_id, attempt,
    item, time, text}."""
    from spane_cli.cli.log_lines import LogLabels
    from spane_cli.engine.waiting import follow_rows
    from spane_cli.errors import UsageError
    from spane_cli.store import queries
    from spane_cli.timeutil import iso
    from spane_cli.workflow.durations import DurationError, parse_duration

    try:
        within = parse_duration(timeout) if timeout else None
    except DurationError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    current, store = store_only(ctx)
    execution = store.require_execution(execution_id)
    if node is not None:
        version = store.versions.get(execution.version_id)
        if node not in version.workflow.nodes:
            from spane_cli.errors import NotFound

            raise NotFound(f"execution {execution_id} has no node {node!r}")

    def fetch(after: int) -> list[Any]:
        return queries.logs_after(execution_id, after, node)

    labels = LogLabels(lambda node_id, index: queries.item_value(execution_id, node_id, index))
    for row in follow_rows(execution_id, fetch, follow, within=within):
        if current.output is OutputFormat.JSON:
            record = {
                "execution_id": row.execution_id,
                "node_id": row.node_id,
                "attempt": row.attempt,
                "item": row.item,
                "time": iso(row.created_at),
                "text": row.text,
            }
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            prefix = labels.label(row.node_id, row.item, row.attempt, row.worker) + " "
            for line in row.text.splitlines():
                sys.stdout.write(f"{prefix}{line}\n")
        sys.stdout.flush()
    if follow:
        _exit_as_watch(execution_id)


def _exit_as_watch(execution_id: str) -> None:
    """The exit code `spane watch` gives for the execution's end."""
    from spane_cli.cli.run_cmd import EXIT_BY_STATUS
    from spane_cli.errors import ExitCode
    from spane_cli.states import TERMINAL_EXECUTION
    from spane_cli.store import queries

    status = queries.execution_status(execution_id)
    if status not in TERMINAL_EXECUTION:
        raise typer.Exit(int(ExitCode.TIMED_OUT))  # --timeout ran out first
    code = EXIT_BY_STATUS.get(status or "", ExitCode.FAILED)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
