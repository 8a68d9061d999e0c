"""Opening Redis and the database from settings, with exit-code-3 errors that name which."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spane_cli.config import Settings, default_sqlite_path
from spane_cli.errors import ServiceUnreachable, UsageError
from spane_cli.store.db import check_reachable, describe, open_database
from spane_cli.store.migrations import migrate, migration_status
from spane_cli.store.store import Store
from spane_cli.text import error_line

if TYPE_CHECKING:
    from redis import Redis


def database_url(settings: Settings) -> str:
    return settings.db_url or f"sqlite:///{default_sqlite_path()}"


def open_store(settings: Settings, *, migrate_if_needed: bool = True) -> Store:
    url = database_url(settings)
    database = open_database(url)
    check_reachable(database, url)
    store = Store(database)
    if migrate_if_needed and not migration_status(database).up_to_date:
        migrate(database)
    return store


def open_redis(url: str) -> Redis:
    # Imported here: commands that only read the database (get, list, events) start faster.
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        connection = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    except ValueError as exc:  # no scheme, a port out of range, a db that is not a number
        raise UsageError(f"invalid Redis URL {describe(url)}: {error_line(exc)}") from None
    try:
        connection.ping()
    except (RedisError, OSError) as exc:
        raise ServiceUnreachable(
            f"Redis unreachable at {describe(url)}: {error_line(exc)}"
        ) from None
    return connection
