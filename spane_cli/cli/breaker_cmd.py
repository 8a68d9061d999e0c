"""`spane breaker ...`: the circuit breakers of the hosts http nodes call."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spane_cli.cli.services import store_only

breaker_app = typer.Typer(
    help="Circuit breakers of http hosts (`circuit_breakers:` in a workflow file): after so "
    "many failures within a window a host's breaker opens, and its nodes fail at once (or "
    "wait) until one probe succeeds. The state is shared by every worker.",
    no_args_is_help=True,
)


@breaker_app.command("list")
def list_breakers(
    ctx: typer.Context,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only the breakers that are open or half open.")
    ] = False,
) -> None:
    """Every breaker that has counted a failure: state, recent failures, open until, probe.
    -o json prints a bare array."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console

    current, store = store_only(ctx)
    views = [view.as_json() for view in store.list_breakers(only_open=open_only)]
    if print_data(views, current.output):
        return
    if not views:
        sys.stderr.write("no breakers\n")
        return
    table = Table(show_edge=False)
    for column in ("host", "state", "failures", "open until", "probe"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view["host"],
            view["state"],
            str(view["recent_failures"]),
            view["open_until"] or "-",
            view["probe"] or "-",
        )
    console().print(table)


@breaker_app.command("reset")
def reset(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Argument(help="The host (HOST or HOST:PORT) as `list` shows it.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Reset every breaker.")] = False,
) -> None:
    """Close a breaker at once and forget its failures (the next node runs normally)."""
    from spane_cli.errors import NotFound, UsageError

    if (host is None) == (not every):
        raise UsageError("name one host, or give --all")
    current, store = store_only(ctx)
    count = store.reset_breakers(None if every else host)
    if host is not None and count == 0:
        raise NotFound(f"no breaker for host {host!r}")
    if not current.quiet:
        sys.stdout.write(f"{count} breaker{'s' if count != 1 else ''} reset\n")
