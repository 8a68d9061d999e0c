"""Human tables (Rich). Only used for table output; machine output never goes through here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from spane_cli.text import first_line

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "upstream_failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "queued": "blue",
    "retrying": "yellow",
    "waiting": "yellow",
    "paused": "yellow",
    "skipped": "dim",
    "pending": "dim",
}


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def execution_table(view: dict[str, Any]) -> None:
    out = console()
    title = f"[bold]{view['workflow']}[/bold] v{view['version']}"
    out.print(f"{title}  {view['id']}  {styled(view['status'])}")
    if view.get("schedule"):
        out.print(f"fired by schedule {view['schedule']} for {view['fire_time']}")
    if view.get("error"):
        out.print(f"[red]{first_line(view['error'])}[/red]")
    table = Table(show_edge=False)
    for column in ("node", "status", "attempts", "started", "finished", "error"):
        table.add_column(column)
    for node_id, node in view["nodes"].items():
        error = first_line(node["error"])
        table.add_row(
            node_id,
            styled(node["status"]),
            str(node["attempts"]),
            node["started_at"] or "",
            node["finished_at"] or "",
            error[:60],
        )
    out.print(table)


def executions_table(views: list[dict[str, Any]]) -> None:
    table = Table(show_edge=False)
    for column in ("id", "workflow", "status", "created", "finished"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view["id"],
            view["workflow"],
            styled(view["status"]),
            view["created_at"] or "",
            view["finished_at"] or "",
        )
    console().print(table)
