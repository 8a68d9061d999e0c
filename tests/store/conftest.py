"""The store under test: the same contract on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = request.getfixturevalue(f"{request.param}_url")
    database = open_database(url)
    migrate(database)
    yield Store(database)
    database.close()
