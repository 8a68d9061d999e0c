"""Waiting for executions to end (engine/waiting.py), on SQLite: no Redis, no worker."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from spane_cli.engine.waiting import Pace, follow_rows, wait_for_end
from spane_cli.store import queries
from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version

QUICK = Pace(first=0.01, longest=0.01)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    database = open_database(sqlite_url)
    migrate(database)
    yield Store(database)
    database.close()


def new_execution(store: Store) -> str:
    data = {"version": 1, "name": "wf", "nodes": {"a": {"type": "noop"}}}
    version_id = int(register_version(store.database, "wf", data, {}).id)
    execution_id, _, _ = store.create_execution(version_id, {})
    return execution_id


def test_pauses_grow_to_the_longest() -> None:
    pauses = list(itertools.islice(Pace(first=0.1, longest=0.3, growth=2).pauses(), 4))
    assert pauses == [0.1, 0.2, 0.3, 0.3]


def test_waiting_gives_up_at_the_limit_and_looks_each_time(store: Store) -> None:
    execution_id = new_execution(store)
    looks: list[int] = []
    ended = wait_for_end([execution_id], within=0.05, pace=QUICK, on_poll=lambda: looks.append(1))
    assert not ended
    assert len(looks) >= 2


def test_waiting_returns_once_every_execution_has_ended(store: Store) -> None:
    first, second = new_execution(store), new_execution(store)
    store.cancel(first)
    assert not wait_for_end([first, second], within=0.05, pace=QUICK)
    threading.Timer(0.05, store.cancel, [second]).start()
    assert wait_for_end([first, second], within=10, pace=QUICK)
    assert queries.unfinished_count([first, second]) == 0


def test_following_reads_until_the_end_then_drains(store: Store) -> None:
    execution_id = new_execution(store)

    def events(after: int) -> list[Any]:
        return queries.events_after(execution_id, after)

    now = [row.type for row in follow_rows(execution_id, events, follow=False)]
    assert now == ["execution.created", "node.queued"]
    threading.Timer(0.05, store.cancel, [execution_id]).start()
    seen = [row.type for row in follow_rows(execution_id, events, follow=True, pause=0.01)]
    assert seen[:2] == now
    assert seen[-1] == "execution.cancelled"
    assert len(seen) == len(events(0))  # each once


def test_recent_executions_filter_and_open_ones(store: Store) -> None:
    first, second = new_execution(store), new_execution(store)
    store.cancel(first)
    assert [e.id for e in queries.recent_executions(status="cancelled")] == [first]
    assert [e.id for e in queries.recent_executions(workflow="other")] == []
    assert {e.id for e in queries.recent_executions(limit=5)} == {first, second}
    assert [e.id for e in queries.open_executions()] == [second]
