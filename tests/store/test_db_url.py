"""Database URLs: which database each one opens, with which settings, and what is refused."""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest
from playhouse.shortcuts import ReconnectMixin

from spane_cli.errors import ServiceUnreachable, UsageError
from spane_cli.store.db import check_reachable, describe, open_database


def test_sqlite_relative_path_is_under_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "state").mkdir()
    database = open_database("sqlite:///state/spane.db")
    assert isinstance(database, peewee.SqliteDatabase)
    assert database.database == "state/spane.db"


def test_sqlite_absolute_path(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/spane.db")  # four slashes in all
    assert database.database == f"{tmp_path}/spane.db"


def test_a_sqlite_file_in_a_missing_directory_is_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        open_database(f"sqlite:///{tmp_path}/typo/spane.db")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "postgresql://", "postgresql://db.example/"]
)
def test_a_url_that_names_no_database_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="names no"):
        open_database(url)


def test_sqlite_path_is_percent_decoded_and_keeps_url_characters(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/my%20db#1?.db")
    assert database.database == f"{tmp_path}/my db#1?.db"


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://:memory:"])
def test_sqlite_in_memory(url: str) -> None:
    assert open_database(url).database == ":memory:"


def test_sqlite_file_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/spane.db")
    try:
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 30000
    finally:
        database.close()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_postgres_defaults(scheme: str) -> None:
    database = open_database(f"{scheme}:///spane")
    assert isinstance(database, ReconnectMixin) and isinstance(database, peewee.PostgresqlDatabase)
    assert database.database == "spane"
    assert database.connect_params == {
        "host": "localhost",
        "port": 5432,
        "connect_timeout": 5,
        "application_name": "spane",
    }


def test_postgres_url_values_win_and_are_decoded() -> None:
    database = open_database(
        "postgresql://ann%40corp:p%40ss%3Aword@db.internal:6543/spane"
        "?connect_timeout=9&sslmode=require"
    )
    assert database.database == "spane"
    assert database.connect_params == {
        "user": "ann@corp",
        "password": "p@ss:word",
        "host": "db.internal",
        "port": 6543,
        "connect_timeout": 9,
        "sslmode": "require",
        "application_name": "spane",
    }


@pytest.mark.parametrize("url", ["mysql://localhost/spane", "redis://localhost/0", "spane.db"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(UsageError) as raised:
        open_database(url)
    assert raised.value.message == (
        f"unsupported database URL {url!r}: use postgresql://... or sqlite:///path"
    )


def test_describe_hides_the_password() -> None:
    assert describe("postgresql://ann:secret@db/spane") == "postgresql://ann:***@db/spane"
    assert describe("postgresql://ann@db/spane") == "postgresql://ann@db/spane"
    assert describe("redis://:secret@cache:6379/0") == "redis://:***@cache:6379/0"


def test_unreachable_postgres_is_one_line_without_the_password() -> None:
    url = "postgresql://ann:secret@127.0.0.1:1/spane"  # nothing listens on port 1
    with pytest.raises(ServiceUnreachable) as raised:
        check_reachable(open_database(url), url)
    message = raised.value.message
    assert message.startswith("database unreachable at postgresql://ann:***@127.0.0.1:1/spane: ")
    assert "\n" not in message and "secret" not in message
