"""Plain SQL for the hot path (claim and complete), portable between SQLite and PostgreSQL.

Building queries through the ORM costs more than running them at the rates workers reach;
these statements are written once with `?` placeholders and adapted to the driver.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
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


def member_of(
    database: peewee.Database, values: Sequence[Any], per_statement: int = 500
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """`(fragment, params)` pairs that together test membership in `values`: one `= ANY(?)`
    on PostgreSQL, so a 10,000-node fan-out is one statement; on SQLite, `IN (...)` lists of
    `per_statement` values, below its limit on parameters."""
    if isinstance(database, peewee.PostgresqlDatabase):
        if len(values) == 1:  # an equality: the planner then always uses the unique index
            yield "= ?", (values[0],)
        elif values:
            yield "= ANY(?)", (list(values),)
        return
    for start in range(0, len(values), per_statement):
        part = tuple(values[start : start + per_statement])
        yield f"IN ({placeholders(len(part))})", part


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# From this many rows on, PostgreSQL gets them through COPY: about three times faster than
# multi-row INSERTs for the 10,000 node rows, outbox rows and events of a big fan-out, which
# are written while every other worker waits for them.
COPY_FROM_ROWS = 50
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value)
    return str(value).translate(_COPY_ESCAPES)


def _copy_line(row: Sequence[Any]) -> str:
    # Most rows hold nothing to escape (ids, statuses, numbers): checking the joined fields
    # once is about twice as fast as escaping each field, which 10,000-row fan-outs notice.
    fields = ["\\N" if v is None else str(v) for v in row]
    joined = "".join(fields)
    escapes = joined.count("\\") > row.count(None)  # each NULL brings one backslash
    if escapes or "\t" in joined or "\n" in joined or "\r" in joined:
        fields = [_copy_field(v) for v in row]
    return "\t".join(fields) + "\n"


def _copy_rows(
    database: peewee.Database, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    text = "".join(map(_copy_line, rows))
    cursor = database.cursor()
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))


def insert_rows(
    database: peewee.Database,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    per_statement: int = 200,
) -> None:
    """Multi-row INSERTs of plain tuples, `per_statement` rows at a time (COPY for many rows on
    PostgreSQL). The ORM's insert_many costs more to build than to run for thousands of rows."""
    if len(rows) >= COPY_FROM_ROWS and isinstance(database, peewee.PostgresqlDatabase):
        _copy_rows(database, table, columns, rows)
        return
    row_sql = "(" + ", ".join("?" * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params = [value for row in chunk for value in row]
        run(database, head + ", ".join(row_sql for _ in chunk), params)


def insert_events(
    database: peewee.Database,
    rows: Sequence[tuple[str, str | None, str, dict[str, Any] | None]],
    now: float,
) -> None:
    """rows: (execution_id, node_id, type, data). Rows may share one data dict (the 10,000
    'queued' events of a fan-out do); it is encoded once."""
    encoded: dict[int, str | None] = {}  # by id(): the dicts stay alive in `rows` meanwhile

    def encode(data: dict[str, Any] | None) -> str | None:
        if not data:
            return None
        key = id(data)
        if key not in encoded:
            encoded[key] = dumps(data)
        return encoded[key]

    insert_rows(
        database,
        "event",
        ("execution_id", "node_id", "type", "data", "created_at"),
        [(e, n, t, encode(d), now) for e, n, t, d in rows],
    )
