"""The live view of `spane watch` and `spane run --watch`: pure rendering from views."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from spane_cli.cli.tables import STATUS_STYLE, duration_text, id_column
from spane_cli.states import TERMINAL_NODE
from spane_cli.text import first_line


def execution_panel(
    view: dict[str, Any],
    node_types: dict[str, str],
    waits: dict[str, str] | None = None,
    now: float | None = None,
) -> RenderableType:
    now = time.time() if now is None else now
    nodes = view["nodes"]
    done = sum(1 for n in nodes.values() if n["status"] in TERMINAL_NODE)
    style = STATUS_STYLE.get(view["status"], "")
    header = Text.assemble(
        (view["workflow"], "bold"),
        f" v{view['version']}  {view['id']}  ",
        (view["status"], style),
        f"  elapsed {duration_text(view['created_at'], view['finished_at'], now)}",
    )
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=max(len(nodes), 1), completed=done, width=40),
        f"{done}/{len(nodes)} nodes",
    )
    table = Table(show_edge=False, expand=False)
    columns = ["node", "type", "status", "attempts", "duration", "started", "error"]
    if waits:
        columns.append("waiting for")
    for column in columns:
        table.add_column(
            column, no_wrap=column not in ("error", "waiting for"), overflow="ellipsis"
        )
    for node_id, node in nodes.items():
        status = node["status"]
        items = node.get("items")
        if items:
            status_text = Text.assemble(
                (status, STATUS_STYLE.get(status, "")), f" {items['done']}/{items['total']}"
            )
        else:
            status_text = Text(status, style=STATUS_STYLE.get(status, ""))
        error = first_line(node["error"])
        table.add_row(
            node_id,
            node_types.get(node_id, ""),
            status_text,
            str(node["attempts"]),
            duration_text(node["started_at"], node["finished_at"], now),
            (node["started_at"] or "")[11:23],
            Text(error[:80], style="red"),
            *([Text((waits or {}).get(node_id, ""), style="dim")] if waits else []),
        )
    parts: list[RenderableType] = [header, progress, table]
    if view.get("error"):
        parts.append(Text(first_line(view["error"]), style="red"))
    return Group(*parts)


def executions_overview(views: list[dict[str, Any]], now: float | None = None) -> RenderableType:
    now = time.time() if now is None else now
    table = Table(title="active executions", show_edge=False)
    id_column(table)
    for column in ("workflow", "status", "progress", "elapsed"):
        table.add_column(column)
    for view in views:
        nodes = view["nodes"]
        done = sum(1 for n in nodes.values() if n["status"] in TERMINAL_NODE)
        table.add_row(
            view["id"],
            view["workflow"],
            Text(view["status"], style=STATUS_STYLE.get(view["status"], "")),
            f"{done}/{len(nodes)}",
            duration_text(view["created_at"], view["finished_at"], now),
        )
    if not views:
        return Text("no active executions", style="dim")
    return table
