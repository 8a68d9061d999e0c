"""Shared fixtures: services of this test run's own (see cluster_support), SQLite in a temporary
directory, an isolated environment for every test, and the `postgres` / `redis` markers put on
every test that uses those services, so that `-m "not redis"` runs the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_support import (
    cluster,
    fresh_postgres_url,
    postgres_databases,
    postgres_url,
    private_redis,
    redis_server,
    redis_url,
)

__all__ = [
    "cluster",
    "fresh_postgres_url",
    "postgres_databases",
    "postgres_url",
    "private_redis",
    "redis_server",
    "redis_url",
]

# The fixtures at the root of each service: every fixture that uses one depends on them.
SERVICE_FIXTURES = {
    "postgres": {"postgres_databases"},
    "redis": {"redis_server", "private_redis"},
}

# Variables that would point a test at the user's own services, state or worker timings.
USER_ENVIRONMENT = (
    "SPANE_DATABASE_URL",
    "DATABASE_URL",
    "SPANE_REDIS_URL",
    "REDIS_URL",
    "SPANE_DEBUG",
    "SPANE_HEARTBEAT_EVERY",
    "SPANE_HEARTBEAT_TTL",
    "SPANE_RECONCILE_EVERY",
    "SPANE_CANCEL_CHECK_EVERY",
    "SPANE_STOP_GRACE",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, roots in SERVICE_FIXTURES.items():
            if used & roots:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """SPANE_HOME in a temporary directory, no inherited service URLs, 120-column tables.

    SPANE_REDIS_URL names a socket nothing listens on: a command that needs Redis and is not
    given the test's own fails (exit 3) instead of writing to the default localhost:6379,
    which may be someone else's. A test about how the URL is resolved deletes it."""
    home = tmp_path_factory.mktemp("spane-home")
    monkeypatch.setenv("SPANE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "120")
    for name in USER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPANE_REDIS_URL", f"unix://{home}/no-redis-here.sock")
    return home


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file of this test's own."""
    return f"sqlite:///{tmp_path / 'spane.db'}"
