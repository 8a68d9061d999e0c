"""What Tab offers for values that live in the database (execution ids, workflow names) or
in the code (statuses). A completer never fails: without a database it offers nothing."""

from __future__ import annotations

from typing import Annotated

import typer

from spane_cli.states import ExecutionStatus

_OFFERED = 50


def _store_of(ctx: typer.Context) -> bool:
    """Open the store the command line names (completion runs no callback, so the root's
    parsed options are read here); False when it cannot be opened."""
    from spane_cli.config import resolve_settings
    from spane_cli.engine.connections import open_store

    root = ctx.find_root().params
    try:
        open_store(resolve_settings(root.get("db"), None, None, False, False),
                   migrate_if_needed=False)  # fmt: skip
    except Exception:  # a completion must never print an error into the shell
        return False
    return True


def execution_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    if not _store_of(ctx):
        return []
    from spane_cli.store import queries

    try:
        return queries.execution_ids_starting(incomplete, _OFFERED)
    except Exception:
        return []


def workflow_names(ctx: typer.Context, incomplete: str) -> list[str]:
    if not _store_of(ctx):
        return []
    from spane_cli.store import queries

    try:
        return [name for name in queries.workflow_names() if name.startswith(incomplete)]
    except Exception:
        return []


def execution_statuses(incomplete: str) -> list[str]:
    return [status.value for status in ExecutionStatus if status.value.startswith(incomplete)]


# The filter options several commands share, each with its completion.
WorkflowFilter = Annotated[
    str | None,
    typer.Option(
        "--workflow", help="Only this workflow.", metavar="W", autocompletion=workflow_names
    ),
]
StatusFilter = Annotated[
    str | None,
    typer.Option(
        "--status", help="Only this status.", metavar="S", autocompletion=execution_statuses
    ),
]
StatusesFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        help="Only this status (repeatable).",
        metavar="S",
        autocompletion=execution_statuses,
    ),
]
