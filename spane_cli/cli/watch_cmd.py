"""`spane watch [EXEC_ID]`: follow executions live (a Rich table on a terminal, event lines
otherwise); exits with the execution's code like `run --wait`."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import typer

from spane_cli.cli.services import OptionalExecId, store_only

if TYPE_CHECKING:
    from spane_cli.store.store import Store

REFRESH_SECONDS = 0.5


def watch(
    ctx: typer.Context,
    execution_id: OptionalExecId = None,
) -> None:
    """Live view: a header with a progress bar and a table of nodes, updated as events arrive.
    Exits when the execution ends: 0 succeeded, 1 failed, 5 cancelled. Without EXEC_ID it shows
    every active execution until interrupted. When stdout is not a terminal it prints plain
    event lines instead."""
    _, store = store_only(ctx)
    if execution_id is None:
        _watch_all()
        return
    store.require_execution(execution_id)
    status = follow_execution(store, execution_id)
    from spane_cli.cli.run_cmd import EXIT_BY_STATUS
    from spane_cli.errors import ExitCode

    raise typer.Exit(int(EXIT_BY_STATUS.get(status, ExitCode.FAILED)))


def follow_execution(
    store: Store, execution_id: str, within: float | None = None, to_stderr: bool = False
) -> str:
    """Show one execution until it ends, or for `within` seconds at most; returns its status
    (an open one when the time ran out). `to_stderr` keeps stdout for a document printed
    after it (`run --watch -o json`)."""
    stream = sys.stderr if to_stderr else sys.stdout
    if not stream.isatty():
        return _plain_lines(execution_id, within, stream)
    from rich.live import Live

    from spane_cli.cli.tables import console, waits_of
    from spane_cli.cli.watch_view import execution_panel
    from spane_cli.engine.waiting import Pace, wait_for_end
    from spane_cli.store import queries
    from spane_cli.store.views import execution_view

    execution = queries.require_execution(execution_id)
    workflow = store.versions.get(execution.version_id).workflow
    types = {node_id: node.type for node_id, node in workflow.nodes.items()}
    view = execution_view(execution)
    screen = console(stderr=to_stderr)
    with Live(execution_panel(view, types), console=screen, refresh_per_second=4) as live:

        def redraw() -> None:
            # Every time, not only on a new event: foreach items and waits change without one.
            nonlocal view
            current = queries.require_execution(execution_id)
            view = execution_view(current)
            live.update(execution_panel(view, types, waits_of(current, workflow)))

        pace = Pace(REFRESH_SECONDS, REFRESH_SECONDS)
        wait_for_end([execution_id], within=within, pace=pace, on_poll=redraw)
        redraw()  # it may have ended after the last redraw: show the end itself
    return str(view["status"])


def _plain_lines(execution_id: str, within: float | None, stream: TextIO) -> str:
    from spane_cli.cli.history_cmds import format_event
    from spane_cli.engine.waiting import follow_rows
    from spane_cli.store import queries
    from spane_cli.store.views import event_view

    def fetch(after: int) -> list[Any]:
        return queries.events_after(execution_id, after)

    for row in follow_rows(execution_id, fetch, follow=True, within=within):
        stream.write(format_event(event_view(row)) + "\n")
        stream.flush()
    return str(queries.execution_status(execution_id))


def _watch_all() -> None:
    from spane_cli.cli.tables import console
    from spane_cli.cli.watch_view import executions_overview
    from spane_cli.store import queries
    from spane_cli.store.views import execution_view

    def active() -> list[dict[str, Any]]:
        return [execution_view(row) for row in queries.open_executions()]

    if not sys.stdout.isatty():
        console().print(executions_overview(active()))
        return
    from rich.live import Live

    with Live(executions_overview(active()), console=console(), refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(REFRESH_SECONDS * 2)
                live.update(executions_overview(active()))
        except KeyboardInterrupt:
            return
