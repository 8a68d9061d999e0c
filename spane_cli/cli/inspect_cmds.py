"""`spane get EXEC_ID` and `spane list`: executions as tables, JSON or YAML."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

GET_HELP = "Show one execution with every node. -o json prints one object (SPEC shape)."
LIST_HELP = "List executions, newest first. -o json prints a bare array."


def get(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="The execution id.", metavar="EXEC_ID")],
) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.cli.render import print_data
    from spane_cli.engine.connections import open_store
    from spane_cli.store.views import execution_view

    settings = settings_of(ctx)
    store = open_store(settings)
    view = execution_view(store.require_execution(execution_id))
    if print_data(view, settings.output):
        return
    from spane_cli.cli.tables import execution_table

    execution_table(view)


def list_executions(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="Only this status.", metavar="S")
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", help="Only this workflow.", metavar="W")
    ] = None,
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
    views = [execution_view(row) for row in rows]
    if print_data(views, settings.output):
        return
    from spane_cli.cli.tables import executions_table

    executions_table(views)
    if not views:
        sys.stderr.write("no executions\n")
