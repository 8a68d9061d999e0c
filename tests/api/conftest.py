"""Fixtures of the API tests: a `spane serve` on PostgreSQL (and one on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import ApiServer, serving


@pytest.fixture
def pg_server(fresh_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    with serving(fresh_postgres_url, redis_url, tmp_path) as server:
        yield server


@pytest.fixture
def sqlite_server(sqlite_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    with serving(sqlite_url, redis_url, tmp_path) as server:
        yield server
