"""PostgreSQL: a big execution created after an ANALYZE is still claimed through the index."""

from __future__ import annotations

from typing import Any

import peewee
from cluster_support import fresh_postgres_url
from store_steps import claim_one, complete_one

from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version

__all__ = ["fresh_postgres_url"]


def _fan_out(store: Store, children: int) -> str:
    nodes: dict[str, Any] = {"root": {"type": "noop"}}
    nodes.update({f"n{i}": {"type": "noop", "needs": ["root"]} for i in range(children)})
    data = {"version": 1, "name": f"fan-{children}", "nodes": nodes}
    version = int(register_version(store.database, data["name"], data, {}).id)
    execution_id, _, _ = store.create_execution(version, None)
    root = claim_one(store, execution_id, "root", 1, "w")
    assert root is not None
    complete_one(store, root, Report("succeeded"))
    return execution_id


def _node_run_rows_read(database: peewee.Database) -> int:
    row = database.execute_sql(
        "SELECT COALESCE(idx_tup_fetch, 0) + COALESCE(seq_tup_read, 0)"
        " FROM pg_stat_xact_user_tables WHERE relname = 'node_run'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_claims_in_an_execution_newer_than_the_statistics_read_only_their_rows(
    fresh_postgres_url: str,
) -> None:
    database = open_database(fresh_postgres_url)
    migrate(database)
    store = Store(database)
    _fan_out(store, 3000)
    database.execute_sql("ANALYZE node_run")  # as autovacuum does, before the next one exists
    newer = _fan_out(store, 3000)
    store.execution_info(newer)  # cached, like a worker that already ran one of its nodes
    with database.atomic() as outer:  # the claim nests as a savepoint: its reads are counted
        before = _node_run_rows_read(database)
        claims = store.claim_nodes([(newer, f"n{i}", 1) for i in range(8)], "w")
        read = _node_run_rows_read(database) - before
        outer.rollback()
    database.close()
    assert len(claims) == 8
    # Each claim reads its own row (and the parent's output), not the 3,000 of its execution.
    assert read < 100, f"claiming 8 nodes read {read} node rows"
