"""Plain SQL for the hot path (claim and complete), portable between SQLite and PostgreSQL.

Building queries through the ORM costs more than running them at the rates workers reach;
these statements are written once with `?` placeholders and adapted to the driver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import peewee


@lru_cache(maxsize=256)
def _adapt(sql: str, param: str) -> str:
    return sql if param == "?" else sql.replace("?", param)


def run(database: peewee.Database, sql: str, params: Sequence[Any] = ()) -> Any:
    """Execute and return the cursor."""
    return database.execute_sql(_adapt(sql, database.param), tuple(params))


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def insert_events(
    database: peewee.Database,
    rows: Sequence[tuple[str, str | None, str, dict[str, Any] | None]],
    now: float,
) -> None:
    """rows: (execution_id, node_id, type, data), one multi-row INSERT per 200."""
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        values = ", ".join("(?, ?, ?, ?, ?)" for _ in chunk)
        params: list[Any] = []
        for execution_id, node_id, event_type, data in chunk:
            params += [execution_id, node_id, event_type, dumps(data or None), now]
        run(
            database,
            "INSERT INTO event (execution_id, node_id, type, data, created_at) VALUES " + values,
            params,
        )
