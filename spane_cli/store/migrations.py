"""Schema migrations: a numbered list applied in order, recorded in `schema_version`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import peewee

from spane_cli.store import models
from spane_cli.store.db import write_transaction


def _initial(database: peewee.Database) -> None:
    database.create_tables(
        [t for t in models.ALL_TABLES if t is not models.SchemaVersion], safe=True
    )
    if isinstance(database, peewee.PostgresqlDatabase):
        # Room on each page for the new row version of an update, so updates stay HOT.
        for table in ("node_run", "execution", "outbox"):
            database.execute_sql(f"ALTER TABLE {table} SET (fillfactor = 70)")


def _no_execution_id_statistics(database: peewee.Database) -> None:
    if not isinstance(database, peewee.PostgresqlDatabase):
        return
    # Statistics on execution_id only ever describe executions that existed at the last
    # ANALYZE: a new one then looks empty to the planner, which reads every row of it to find
    # a few nodes (`execution_id = ? AND node_id IN (...)` with node_id as a mere filter), and
    # a 10,000-node fan-out turns quadratic. Without them the planner assumes an execution has
    # rows, and looks the nodes up in the (execution_id, node_id) index.
    for table in ("node_run", "outbox", "node_item"):
        database.execute_sql(f"ALTER TABLE {table} ALTER COLUMN execution_id SET STATISTICS 0")


def _schedules(database: peewee.Database) -> None:
    # A database made by migration 1 from the current models has all of it already.
    database.create_tables(
        [models.Schedule, models.ScheduleFire, models.ScheduleBackfill], safe=True
    )
    columns = {column.name for column in database.get_columns("execution")}
    if "schedule" not in columns:
        database.execute_sql("ALTER TABLE execution ADD COLUMN schedule VARCHAR(128)")
    if "fire_time" not in columns:
        database.execute_sql("ALTER TABLE execution ADD COLUMN fire_time DOUBLE PRECISION")
    database.execute_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS execution_schedule_fire_time"
        " ON execution (schedule, fire_time)"
    )


def _item_child_executions(database: peewee.Database) -> None:
    # A database made after this column joined the model has it from the initial schema.
    if "child_execution_id" in {column.name for column in database.get_columns("node_item")}:
        return
    database.execute_sql("ALTER TABLE node_item ADD COLUMN child_execution_id VARCHAR(36)")


def _node_log_item_and_worker(database: peewee.Database) -> None:
    # A database made by the first migration after these columns joined the model has them.
    present = {column.name for column in database.get_columns("node_log")}
    if "item" not in present:
        database.execute_sql("ALTER TABLE node_log ADD COLUMN item INTEGER")
    if "worker" not in present:
        database.execute_sql("ALTER TABLE node_log ADD COLUMN worker VARCHAR(128)")


def _pools(database: peewee.Database) -> None:
    database.create_tables([models.Pool, models.PoolSlot, models.PoolWaiter], safe=True)


def _circuit_breakers(database: peewee.Database) -> None:
    database.create_tables([models.CircuitBreaker], safe=True)


def _api_tokens(database: peewee.Database) -> None:
    database.create_tables([models.ApiToken], safe=True)
    # A name is taken again once its token is revoked; both backends have partial indexes.
    database.execute_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS api_token_live_name"
        " ON api_token (name) WHERE revoked_at IS NULL"
    )


def _hooks(database: peewee.Database) -> None:
    database.create_tables([models.Hook, models.HookDelivery], safe=True)


# Append new migrations; never edit one that has shipped.
MIGRATIONS: list[tuple[int, str, Callable[[peewee.Database], None]]] = [
    (1, "initial schema", _initial),
    (2, "no planner statistics on execution ids", _no_execution_id_statistics),
    (
        3,
        "schedules, their fires and backfills; executions record schedule and fire time",
        _schedules,
    ),
    (4, "foreach items of workflow nodes name their child execution", _item_child_executions),
    (5, "node logs name their foreach item and worker", _node_log_item_and_worker),
    (6, "concurrency pools, their slots and waiters", _pools),
    (7, "bearer tokens of the HTTP API", _api_tokens),
    (8, "circuit breakers of http hosts", _circuit_breakers),
    (9, "webhooks of workflows and their deliveries", _hooks),
]
CURRENT_VERSION = MIGRATIONS[-1][0]
_MIGRATION_LOCK = 726531


@dataclass(frozen=True)
class MigrationStatus:
    current: int  # applied version, 0 for an empty database
    latest: int
    pending: list[str]

    @property
    def up_to_date(self) -> bool:
        return self.current >= self.latest


def applied_version(database: peewee.Database) -> int:
    models.database_proxy.initialize(database)
    if not database.table_exists("schema_version"):
        return 0
    row = models.SchemaVersion.select(peewee.fn.MAX(models.SchemaVersion.version)).scalar()
    return int(row or 0)


def migration_status(database: peewee.Database) -> MigrationStatus:
    current = applied_version(database)
    pending = [f"{n}: {title}" for n, title, _ in MIGRATIONS if n > current]
    return MigrationStatus(current, CURRENT_VERSION, pending)


def migrate(database: peewee.Database) -> list[str]:
    """Apply what is pending; safe to run from several processes at once."""
    models.database_proxy.initialize(database)
    postgres = isinstance(database, peewee.PostgresqlDatabase)
    if postgres:
        # One migrator at a time, from the very first CREATE: concurrent CREATE TABLE IF NOT
        # EXISTS races in PostgreSQL's catalog.
        database.execute_sql("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        database.create_tables([models.SchemaVersion], safe=True)
        applied: list[str] = []
        for number, title, step in MIGRATIONS:
            with write_transaction(database):
                if applied_version(database) >= number:
                    continue
                step(database)
                models.SchemaVersion.create(version=number, applied_at=time.time())
                applied.append(f"{number}: {title}")
        return applied
    finally:
        if postgres:
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
