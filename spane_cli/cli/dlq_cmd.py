"""`spane dlq list|show|replay|purge`: nodes that failed for good."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from spane_cli.cli import completers
from spane_cli.cli.services import since_cutoff, store_and_dispatcher, store_only

dlq_app = typer.Typer(
    help="Dead letters: nodes that failed their last attempt. Fix the cause, then replay.",
    no_args_is_help=True,
)


@dlq_app.command("list")
def list_letters(
    ctx: typer.Context,
    workflow: completers.WorkflowFilter = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Created within, e.g. 1d.", metavar="DUR")
    ] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Include replayed ones.")] = False,
) -> None:
    """Dead letters, newest first (not yet replayed, unless --all). -o json: a bare array;
    -o name (or -q): bare dead letter ids, one a line."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console, id_column, print_names
    from spane_cli.config import OutputFormat
    from spane_cli.store import queries
    from spane_cli.store.views import dead_letter_view
    from spane_cli.text import first_line

    current, _ = store_only(ctx)
    letters = queries.dead_letters(
        include_replayed=all_letters, workflow=workflow, created_since=since_cutoff(since)
    )
    views = [dead_letter_view(letter) for letter in letters]
    if current.quiet or current.output is OutputFormat.NAME:
        print_names([str(view["id"]) for view in views])
        return
    if print_data(views, current.output):
        return
    table = Table(show_edge=False)
    for column in ("id", "workflow", "node"):
        table.add_column(column, no_wrap=True)
    id_column(table, "execution")
    for column in ("attempts", "created", "error"):
        table.add_column(column)
    for view in views:
        error = first_line(view["error"])[:50]
        table.add_row(
            str(view["id"]),
            view["workflow"],
            view["node_id"],
            view["execution_id"],
            str(view["attempts"]),
            view["created_at"],
            error,
        )
    console().print(table)


@dlq_app.command("show")
def show(
    ctx: typer.Context,
    letter_id: Annotated[int, typer.Argument(help="The dead letter id.", metavar="ID")],
) -> None:
    """One dead letter: error, attempts, the input the node got, the tail of its logs."""
    from spane_cli.cli.render import print_data
    from spane_cli.store import queries
    from spane_cli.store.views import dead_letter_view

    current, _ = store_only(ctx)
    letter = queries.require_dead_letter(letter_id)
    logs = queries.node_log_text(letter.execution_id, letter.node_id)
    view = {**dead_letter_view(letter), "input": letter.input, "logs_tail": logs[-4000:]}
    if print_data(view, current.output):
        return
    for key in (
        "id",
        "workflow",
        "execution_id",
        "node_id",
        "attempts",
        "created_at",
        "replayed_at",
    ):
        value = view[key]
        sys.stdout.write(f"{key:>13}: {'-' if value is None else value}\n")
    # JSON, as the node's templates saw it: not Python's notation of it.
    shown_input = json.dumps(view["input"], ensure_ascii=False, default=str)
    sys.stdout.write(f"{'input':>13}: {shown_input}\n")
    sys.stdout.write(f"{'error':>13}: {view['error'] or '-'}\n")
    if view["logs_tail"]:
        sys.stdout.write("--- logs (tail) ---\n" + view["logs_tail"])
        if not view["logs_tail"].endswith("\n"):
            sys.stdout.write("\n")


@dlq_app.command("replay")
def replay(
    ctx: typer.Context,
    letter_ids: Annotated[
        list[int] | None, typer.Argument(help="Dead letter ids.", metavar="ID...")
    ] = None,
    all_letters: Annotated[
        bool, typer.Option("--all", help="Every dead letter not yet replayed.")
    ] = False,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            help="Those of one workflow.",
            metavar="W",
            autocompletion=completers.workflow_names,
        ),
    ] = None,
) -> None:
    """Reopen the failed node with fresh attempts, reset what it blocked, and continue the
    execution. A dead letter is replayed once: replaying it again exits 1 and changes nothing."""
    from spane_cli.errors import OperationFailed, SpaneError, UsageError
    from spane_cli.store import queries

    if not letter_ids and not all_letters and not workflow:
        raise UsageError("give dead letter ids, --all or --workflow W")
    current, store, dispatcher = store_and_dispatcher(ctx)
    ids = list(letter_ids or [])
    if all_letters or workflow:
        ids += queries.unreplayed_dead_letter_ids(workflow)
    failures: list[SpaneError] = []
    for letter_id in ids:
        try:
            dispatcher.enqueue(store.replay_dead_letter(letter_id))
        except SpaneError as exc:
            failures.append(exc)
            sys.stderr.write(f"spane: {exc.message}\n")
            continue
        if not current.quiet:
            sys.stdout.write(f"replayed {letter_id}\n")
    if failures:
        if len(failures) == 1 and len(ids) == 1:
            raise typer.Exit(int(failures[0].exit_code))
        raise OperationFailed(f"{len(failures)} of {len(ids)} dead letters were not replayed")


@dlq_app.command("purge")
def purge(
    ctx: typer.Context,
    letter_ids: Annotated[
        list[int] | None, typer.Argument(help="Dead letter ids.", metavar="ID...")
    ] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Delete dead letters (the executions and their history stay)."""
    from spane_cli.errors import NotFound, UsageError

    if not letter_ids and not all_letters:
        raise UsageError("give dead letter ids or --all")
    current, store = store_only(ctx)
    removed = store.purge_dead_letters(None if all_letters else list(letter_ids or []))
    if letter_ids and not all_letters and removed < len(letter_ids):
        raise NotFound(f"{len(letter_ids) - removed} of the dead letters did not exist")
    if not current.quiet:
        sys.stdout.write(f"purged {removed}\n")
