"""`spane gc`: delete old finished executions with their nodes, events, logs and dead
letters, in bounded batches."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spane_cli.cli import completers

HELP = (
    "Delete finished executions created longer ago than --older-than, with their nodes, "
    "items, events, logs and dead letters, a batch at a time (an open execution is never "
    "deleted). --dry-run counts what would go. Workers can do it by themselves: set "
    "SPANE_RETENTION (e.g. 30d) in their environment."
)


def gc(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Created longer ago than this, e.g. 30d.", metavar="DUR"),
    ],
    statuses: completers.StatusesFilter = None,
    workflow: completers.WorkflowFilter = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    from spane_cli.cli.render import print_data
    from spane_cli.cli.services import since_cutoff, store_only
    from spane_cli.errors import UsageError
    from spane_cli.states import TERMINAL_EXECUTION
    from spane_cli.store.retention import Selection

    terminal = {s.value for s in TERMINAL_EXECUTION}
    for status in statuses or []:
        if status not in terminal:
            raise UsageError(
                f"--status {status!r}: only finished executions are deleted; use one of "
                + ", ".join(sorted(terminal))
            )
    cutoff = since_cutoff(older_than, option="--older-than")
    assert cutoff is not None
    current, store = store_only(ctx)
    selection = Selection(cutoff, frozenset(statuses or terminal), workflow)
    if dry_run:
        counts = dict(store.gc_count(selection))
        if not print_data({"dry_run": True, "would_delete": counts}, current.output):
            _say_counts("would delete", counts)
        return
    total: dict[str, int] = {}
    while batch := store.gc_batch(selection):
        if not batch.get("execution"):
            break
        for table, count in batch.items():
            total[table] = total.get(table, 0) + count
        if not current.quiet and sys.stderr.isatty():
            sys.stderr.write(f"\rdeleted {total['execution']} executions...")
            sys.stderr.flush()
    if not current.quiet and sys.stderr.isatty() and total:
        sys.stderr.write("\n")
    if not print_data({"dry_run": False, "deleted": total}, current.output) and not current.quiet:
        _say_counts("deleted", total)


def _say_counts(verb: str, counts: dict[str, int]) -> None:
    tables = sorted(counts, key=lambda table: (table != "execution", table))
    rows = ", ".join(f"{counts[table]} {table}" for table in tables if counts[table])
    sys.stdout.write(f"{verb}: {rows or 'nothing'}\n")
