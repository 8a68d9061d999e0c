"""Opening the database named by a URL: PostgreSQL in production, SQLite embedded."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import unquote, urlparse

import peewee
from playhouse import db_url
from playhouse.shortcuts import ReconnectMixin

from spane_cli.errors import ServiceUnreachable, UsageError
from spane_cli.text import error_line


class _ReconnectingPostgres(ReconnectMixin, peewee.PostgresqlDatabase):
    """Reconnects after the server restarted or our backend was terminated."""

    reconnect_errors = (
        *ReconnectMixin.reconnect_errors,
        (peewee.OperationalError, "terminating connection"),
        (peewee.InterfaceError, "connection already closed"),
        (peewee.OperationalError, "server closed the connection"),
        (peewee.OperationalError, "could not receive data"),
        (peewee.OperationalError, "SSL connection has been closed"),
    )


POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")
db_url.register_database(_ReconnectingPostgres, *POSTGRES_SCHEMES)
# What a PostgreSQL URL may leave out. A host is always given so that libpq goes over TCP to
# localhost instead of a Unix socket; the URL's own values (query parameters too) win.
_POSTGRES_DEFAULTS: dict[str, Any] = {
    "host": "localhost",
    "port": 5432,
    "connect_timeout": 5,
    "application_name": "spane",
}


# SQLite URLs are cut by hand: db_url's urlparse would take `#` or `?` in a file name for a
# fragment or a query, and fail on `sqlite://:memory:`.
def sqlite_path_of(url: str) -> str:
    if url.startswith("sqlite:///"):
        return unquote(url[len("sqlite:///") :]) if url != "sqlite:///:memory:" else ":memory:"
    return unquote(url[len("sqlite://") :])


def open_database(url: str) -> peewee.Database:
    """A peewee Database for `url`; connects lazily. Raises UsageError for unknown schemes."""
    if url.startswith("sqlite:"):
        path = sqlite_path_of(url)
        if not path:
            raise UsageError(f"database URL {url!r} names no file: use sqlite:///PATH")
        if path != ":memory:":
            path = "/" + path.lstrip("/") if url.startswith("sqlite:////") else path
            # Not created: a directory that is not there is more often a typo than a wish.
            # (The embedded default's directory is created where it is chosen, in config.)
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise UsageError(f"database URL {url!r}: directory {directory} does not exist")
        return peewee.SqliteDatabase(
            path,
            timeout=30,
            pragmas={
                "journal_mode": "wal",  # readers never block the writer
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 30000,
            },
            autoconnect=True,
        )
    if urlparse(url).scheme in POSTGRES_SCHEMES:
        try:
            given = db_url.parse(url, unquote_password=True, unquote_user=True)
        except ValueError as exc:  # a port that is not a number, say
            raise UsageError(f"invalid database URL {describe(url)}: {error_line(exc)}") from None
        if not given.get("database"):
            raise UsageError(
                f"database URL {describe(url)} names no database: use postgresql://HOST/NAME"
            )
        missing = {k: v for k, v in _POSTGRES_DEFAULTS.items() if given.get(k) in (None, "")}
        return db_url.connect(
            url,
            unquote_password=True,
            unquote_user=True,
            autorollback=True,
            autoconnect=True,
            **missing,
        )
    raise UsageError(f"unsupported database URL {url!r}: use postgresql://... or sqlite:///path")


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def check_reachable(database: peewee.Database, url: str) -> None:
    try:
        database.connect(reuse_if_open=True)
        database.execute_sql("SELECT 1")
    except peewee.OperationalError as exc:
        raise ServiceUnreachable(
            f"database unreachable at {describe(url)}: {error_line(exc)}"
        ) from None


def write_transaction(database: peewee.Database) -> AbstractContextManager[Any]:
    """A transaction that takes SQLite's write lock up front, so two writers never deadlock
    upgrading read locks; on PostgreSQL a plain transaction."""
    if isinstance(database, peewee.SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()
