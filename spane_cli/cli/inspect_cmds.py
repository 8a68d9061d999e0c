"""`spane get EXEC_ID` and `spane list`: executions as tables, JSON or YAML."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spane_cli.cli import completers
from spane_cli.cli.services import ExecId

GET_HELP = (
    "Show one execution with every node, and what each waiting node waits for (parents, a "
    "paused execution, a retry or delay due at T, a full max_parallel, no live worker on its "
    "queue). -o json prints one object, nodes included (with a node's priority when it has "
    "one); -o wide adds each node's type, duration and items, and its priority when any "
    "node has one."
)
LIST_HELP = (
    "List executions, newest first. -o json prints a bare array; -o name (or -q) bare ids, "
    "one a line; -o wide adds duration, nodes done, attempts and items."
)


def get(
    ctx: typer.Context,
    execution_id: ExecId,
) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.cli.render import print_data
    from spane_cli.engine.connections import open_store
    from spane_cli.store.views import execution_view

    settings = settings_of(ctx)
    store = open_store(settings)
    execution = store.require_execution(execution_id)
    view = execution_view(execution)
    if print_data(view, settings.output):
        return
    from spane_cli.cli.tables import execution_table, print_names, waits_of
    from spane_cli.config import OutputFormat

    if settings.output is OutputFormat.NAME:
        print_names([view["id"]])
        return
    workflow = store.versions.get(execution.version_id).workflow
    types = {node_id: node.type for node_id, node in workflow.nodes.items()}
    wide = settings.output is OutputFormat.WIDE
    execution_table(view, wide=wide, types=types, waits=waits_of(execution, workflow))


def list_executions(
    ctx: typer.Context,
    status: completers.StatusFilter = None,
    workflow: completers.WorkflowFilter = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Created within this duration, e.g. 1h.", metavar="DUR"),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", help="Only what this schedule fired.", metavar="NAME"),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", help="At most this many (default 50; 1000 with --schedule).", min=1
        ),
    ] = None,
) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.cli.render import print_data
    from spane_cli.cli.services import since_cutoff
    from spane_cli.engine.connections import open_store
    from spane_cli.errors import UsageError
    from spane_cli.states import ExecutionStatus
    from spane_cli.store import queries
    from spane_cli.store.views import execution_view

    settings = settings_of(ctx)
    if status is not None and status not in {s.value for s in ExecutionStatus}:
        raise UsageError(
            f"--status {status!r}: use one of {', '.join(s.value for s in ExecutionStatus)}"
        )
    open_store(settings)
    rows = queries.recent_executions(
        status=status,
        workflow=workflow,
        created_since=since_cutoff(since),
        schedule=schedule,
        limit=limit or (1000 if schedule else 50),
    )
    from spane_cli.config import OutputFormat

    if settings.quiet or settings.output is OutputFormat.NAME:
        from spane_cli.cli.tables import print_names

        print_names([str(row.id) for row in rows])
        return
    wide = settings.output is OutputFormat.WIDE
    views = [
        execution_view(row, with_nodes=settings.output is not OutputFormat.TABLE) for row in rows
    ]
    if print_data(views, settings.output):
        return
    from spane_cli.cli.tables import executions_table

    executions_table(views, wide=wide)
    if not views:
        sys.stderr.write("no executions\n")
