"""Human tables (Rich). Only used for table output; machine output never goes through here."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from spane_cli.states import TERMINAL_NODE
from spane_cli.text import first_line
from spane_cli.timeutil import parse_iso

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


# Printed to a pipe or a file, a table takes the width it needs, not 80 columns: nothing in
# it (an id above all) is cut for a reader that is a program or a log.
_PIPE_WIDTH = 1000
ID_WIDTH = 36


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width, stderr=stderr)


def id_column(table: Table, name: str = "id") -> None:
    """A column of execution ids: never wrapped or cut, the other columns give way."""
    table.add_column(name, no_wrap=True, min_width=ID_WIDTH, overflow="fold")


def print_names(names: list[str]) -> None:
    """`-o name` and `-q`: bare ids, one a line."""
    for name in names:
        sys.stdout.write(f"{name}\n")


def duration_text(start: str | None, end: str | None, now: float | None = None) -> str:
    if not start:
        return ""
    now = time.time() if now is None else now
    seconds = (parse_iso(end) if end else now) - parse_iso(start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def items_text(node: dict[str, Any]) -> str:
    items = node.get("items")
    return f"{items['done']}/{items['total']}" if items else ""


def execution_table(
    view: dict[str, Any],
    wide: bool = False,
    types: dict[str, str] | None = None,
    waits: dict[str, str] | None = None,
) -> None:
    out = console()
    title = f"[bold]{view['workflow']}[/bold] v{view['version']}"
    out.print(f"{title}  {view['id']}  {styled(view['status'])}")
    if view.get("schedule"):
        out.print(f"fired by schedule {view['schedule']} for {view['fire_time']}")
    if view.get("error"):
        out.print(f"[red]{first_line(view['error'])}[/red]")
    table = Table(show_edge=False)
    columns = ["node", "status", "attempts", "started", "finished", "error"]
    if wide:
        columns[1:1] = ["type"]
        columns[4:4] = ["duration", "items"]
        if any("priority" in node for node in view["nodes"].values()):
            columns.insert(2, "priority")
    if waits:
        columns.append("waiting for")
    for column in columns:
        table.add_column(column, no_wrap=column not in ("error", "waiting for"))
    for node_id, node in view["nodes"].items():
        cells = {
            "node": node_id,
            "type": (types or {}).get(node_id, ""),
            "status": styled(node["status"]),
            "attempts": str(node["attempts"]),
            "duration": duration_text(node["started_at"], node["finished_at"]),
            "items": items_text(node),
            "priority": str(node.get("priority", 0)),
            "started": node["started_at"] or "",
            "finished": node["finished_at"] or "",
            "error": first_line(node["error"])[:60],
            "waiting for": (waits or {}).get(node_id, ""),
        }
        table.add_row(*(cells[column] for column in columns))
    out.print(table)


def waits_of(execution: Any, workflow: Any) -> dict[str, str]:
    """What each waiting node of `execution` waits for (store/waits.py), judged with the
    heartbeat TTL the workers are given."""
    from spane_cli.engine.worker_settings import WorkerTimings
    from spane_cli.store.waits import waiting_reasons
    from spane_cli.store.workers import live_workers

    ttl = WorkerTimings.from_environment().heartbeat_ttl
    queues = {queue for worker in live_workers(ttl=ttl) for queue in worker.queues}
    return waiting_reasons(execution, workflow, queues)


def executions_table(views: list[dict[str, Any]], wide: bool = False) -> None:
    table = Table(show_edge=False)
    id_column(table)
    columns = ["workflow", "status", "created", "finished"]
    if wide:
        columns += ["duration", "nodes", "attempts", "items"]
    for column in columns:
        table.add_column(column, no_wrap=True)
    for view in views:
        nodes = view.get("nodes", {}).values()
        items = [n["items"] for n in nodes if n.get("items")]
        cells = {
            "workflow": view["workflow"],
            "status": styled(view["status"]),
            "created": view["created_at"] or "",
            "finished": view["finished_at"] or "",
            "duration": duration_text(view["started_at"], view["finished_at"]),
            "nodes": f"{sum(n['status'] in TERMINAL_NODE for n in nodes)}/{len(nodes)}",
            "attempts": str(sum(n["attempts"] for n in nodes)),
            "items": (
                f"{sum(i['done'] for i in items)}/{sum(i['total'] for i in items)}" if items else ""
            ),
        }
        table.add_row(view["id"], *(cells[column] for column in columns))
    console().print(table)
