"""The schedules' tick in a worker, driven with explicit times: what it costs when nothing is
due, and that what it fires reaches Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from spane_cli.engine import reconcile
from spane_cli.engine.dispatch import Dispatcher
from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.store.workers import beat
from spane_cli.workflow.schedule_spec import ScheduleSpec

T0 = 1_800_000_000.0


@pytest.fixture
def store(fresh_postgres_url: str) -> Iterator[Store]:
    database = open_database(fresh_postgres_url)
    migrate(database)
    yield Store(database)
    database.close()


@pytest.fixture
def dispatcher(redis_url: str) -> Dispatcher:
    return Dispatcher(Redis.from_url(redis_url))


def test_a_tick_with_nothing_due_is_one_query(
    store: Store, dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"version": 1, "name": "wf", "nodes": {"a": {"type": "noop"}}}
    version_id = int(register_version(store.database, "wf", data, {}).id)
    for index in range(50):
        spec = ScheduleSpec(f"hourly-{index}", cron="0 * * * *")
        store.save_schedule(spec, workflow="wf", version_id=version_id, origin="cli", now=T0)
    statements: list[str] = []
    execute = store.database.execute_sql

    def counted(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, *args, **kwargs)

    monkeypatch.setattr(store.database, "execute_sql", counted)
    assert reconcile.fire_schedules(store, dispatcher, T0 + 60) == []
    assert len(statements) == 1


def test_what_a_tick_fires_is_on_its_queue(store: Store, dispatcher: Dispatcher) -> None:
    data = {"version": 1, "name": "wf", "nodes": {"a": {"type": "noop"}}}
    version_id = int(register_version(store.database, "wf", data, {}).id)
    spec = ScheduleSpec("every2", every=2.0)
    store.save_schedule(spec, workflow="wf", version_id=version_id, origin="cli", now=T0)
    beat("w~1", "host", 1, ["default"], now=T0 - 60)
    beat("w~1", "host", 1, ["default"], now=T0 + 4)
    (outcome,) = reconcile.fire_schedules(store, dispatcher, T0 + 4.5, heartbeat_every=1.0)
    assert len(outcome.executions) == 2
    assert dispatcher.queue("default").count == 2
