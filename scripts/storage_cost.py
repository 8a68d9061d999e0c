"""Bytes on disk per node and per event on PostgreSQL: runs executions of a small workflow
through the store (as workers do, without Redis) in a database of its own, then divides
each table's size (heap, indexes and TOAST) by its rows.

    .venv/bin/python scripts/storage_cost.py [--executions 500] [--nodes 6]
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

import psycopg2

from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version

ADMIN = {"host": "127.0.0.1", "user": "postgres", "dbname": "postgres"}
TABLES = ("execution", "node_run", "event", "node_log", "outbox")


def _drive(store: Store, version_id: int, executions: int) -> None:
    for _ in range(executions):
        _, _, dispatches = store.create_execution(version_id, {"date": "2026-12-01"})
        queue = [(d.execution_id, d.node_id, d.attempt) for d in dispatches]
        while queue:
            claims = store.claim_nodes([queue.pop(0)], "storage~1")
            for claim in claims:
                report = Report("succeeded", output={"rows": 42}, logs="loaded 42 rows\n")
                done, _ = store.complete_nodes([(claim, report)])
                queue += [(d.execution_id, d.node_id, d.attempt) for d in done]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=6)
    args = parser.parse_args()
    name = f"spane_storage_{secrets.token_hex(3)}"
    admin = psycopg2.connect(**ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        database = open_database(f"postgresql://postgres@127.0.0.1:5432/{name}")
        migrate(database)
        store = Store(database)
        nodes = {"n0": {"type": "noop"}} | {
            f"n{i}": {"type": "noop", "needs": [f"n{i - 1}"]} for i in range(1, args.nodes)
        }
        data = {"version": 1, "name": "storage", "nodes": nodes}
        version_id = int(register_version(database, "storage", data, {}).id)
        _drive(store, version_id, args.executions)
        database.execute_sql("VACUUM ANALYZE")
        report: dict[str, Any] = {}
        for table in TABLES:
            rows = database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]
            size = database.execute_sql(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]
            report[table] = {"rows": rows, "bytes": size, "bytes_per_row": round(size / rows)
                             if rows else None}  # fmt: skip
        events = report["event"]["rows"]
        nodes_total = report["node_run"]["rows"]
        report["events_per_node"] = round(events / nodes_total, 2) if nodes_total else None
        total = sum(part["bytes"] for part in report.values() if isinstance(part, dict))
        report["bytes_per_node_all_tables"] = round(total / nodes_total) if nodes_total else None
        print(json.dumps(report, indent=2))
        database.close()
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
