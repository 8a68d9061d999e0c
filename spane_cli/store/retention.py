"""Retention: deleting finished executions with everything recorded about them (nodes, items,
events, logs, dead letters, outbox rows), in bounded batches. An open execution is never
deleted: each batch locks its execution rows and deletes only those still terminal, so a
`retry` racing the deletion either reopens first (and the execution stays) or finds it gone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import peewee

from spane_cli.states import TERMINAL_EXECUTION
from spane_cli.store import sql
from spane_cli.store.tx import Caches, transaction

# Executions per transaction: each batch holds its locks briefly.
BATCH_LIMIT = 200

# Tables that hold rows of an execution, by the column naming it; deleted before the
# execution row itself.
_DEPENDENT_TABLES = (
    ("node_log", "execution_id"),
    ("event", "execution_id"),
    ("dead_letter", "execution_id"),
    ("outbox", "execution_id"),
    ("node_item", "execution_id"),
    ("node_run", "execution_id"),
)


@dataclass(frozen=True)
class Selection:
    """Which finished executions a `gc` removes."""

    created_before: float
    statuses: frozenset[str] = frozenset(s.value for s in TERMINAL_EXECUTION)
    workflow: str | None = None


def _where(selection: Selection) -> tuple[str, list[object]]:
    statuses = sorted(selection.statuses & {s.value for s in TERMINAL_EXECUTION})
    placeholders = ", ".join("?" for _ in statuses) or "NULL"
    clause = f"created_at < ? AND status IN ({placeholders})"
    params: list[object] = [selection.created_before, *statuses]
    if selection.workflow is not None:
        clause += " AND workflow = ?"
        params.append(selection.workflow)
    return clause, params


def candidates(caches: Caches, selection: Selection, limit: int) -> list[str]:
    """The oldest `limit` executions the selection matches (a plain read)."""
    clause, params = _where(selection)
    rows = sql.run(
        caches.database,
        f"SELECT id FROM execution WHERE {clause} ORDER BY created_at LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [str(row[0]) for row in rows]


def count_rows(caches: Caches, selection: Selection) -> Counter[str]:
    """What a gc of `selection` would delete, table by table (for --dry-run)."""
    clause, params = _where(selection)
    matching = f"SELECT id FROM execution WHERE {clause}"
    counts: Counter[str] = Counter()
    database = caches.database
    counts["execution"] = int(
        sql.run(database, f"SELECT count(*) FROM ({matching}) m", params).fetchone()[0]
    )
    for table, column in _DEPENDENT_TABLES:
        counted = sql.run(
            database, f"SELECT count(*) FROM {table} WHERE {column} IN ({matching})", params
        ).fetchone()[0]
        counts[table] = int(counted)
    return counts


def delete_batch(caches: Caches, execution_ids: Sequence[str], now: float) -> Counter[str]:
    """Delete those of `execution_ids` that are still terminal, with their rows; returns the
    rows deleted per table."""
    deleted: Counter[str] = Counter()
    if not execution_ids:
        return deleted
    terminal = sorted(s.value for s in TERMINAL_EXECUTION)
    with transaction(caches, now) as tx:
        member, values = _member(sorted(execution_ids))
        status_in = ", ".join("?" for _ in terminal)
        lock = " FOR UPDATE" if isinstance(tx.database, peewee.PostgresqlDatabase) else ""
        # The lock order of every transaction (store/tx.py): deepest first, then by id.
        kept = [
            str(row[0])
            for row in tx.run(
                f"SELECT id FROM execution WHERE id {member} AND status IN ({status_in})"
                f" ORDER BY depth DESC, id{lock}",
                (*values, *terminal),
            ).fetchall()
        ]
        if not kept:
            return deleted
        member, values = _member(kept)
        for table, column in _DEPENDENT_TABLES:
            deleted[table] = tx.run(f"DELETE FROM {table} WHERE {column} {member}", values).rowcount
        deleted["execution"] = tx.run(f"DELETE FROM execution WHERE id {member}", values).rowcount
    return deleted


def _member(ids: Sequence[str]) -> tuple[str, list[object]]:
    # Batches are small (BATCH_LIMIT ids), far below SQLite's limit on parameters.
    return "IN (" + ", ".join("?" for _ in ids) + ")", list(ids)
