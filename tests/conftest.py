"""Shared fixtures: the real services (Redis db 13, a PostgreSQL database of our own, SQLite in
a temporary directory) and an isolated environment for every test.

When a service does not answer, tests that need it are skipped on a developer's machine and
fail under CI (CI set to a true value), where `.ci/run` has started the services.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REDIS_URL = "redis://127.0.0.1:6379/13"
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"

# Variables that would point a test at the user's own services or state.
USER_ENVIRONMENT = (
    "SPANE_DATABASE_URL",
    "DATABASE_URL",
    "SPANE_REDIS_URL",
    "REDIS_URL",
    "SPANE_DEBUG",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def unavailable(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (CI is set, so the service must be running)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """SPANE_HOME in a temporary directory, no inherited service URLs, 120-column tables."""
    home = tmp_path_factory.mktemp("spane-home")
    monkeypatch.setenv("SPANE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "120")
    for name in USER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file of this test's own."""
    return f"sqlite:///{tmp_path / 'spane.db'}"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """Redis database 13 on 127.0.0.1:6379, flushed before and after the test."""
    try:
        import redis
    except ImportError:
        unavailable("the redis package is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    except redis.exceptions.RedisError as exc:
        client.close()
        unavailable(f"Redis at 127.0.0.1:6379 does not answer: {exc}")
    try:
        yield REDIS_URL
    finally:
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database `spane_test_<pid>` on 127.0.0.1:5432 (user postgres), dropped at the end."""
    try:
        import psycopg2
    except ImportError:
        unavailable("the psycopg2 package is not installed")
    try:
        admin = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        )
    except psycopg2.Error as exc:
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT} does not answer: {exc}".strip())
    admin.autocommit = True
    name = f"spane_test_{os.getpid()}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()
