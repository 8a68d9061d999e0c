"""Schedules in the store, on SQLite and PostgreSQL, on a test clock: each fire time becomes
one execution whoever fires it, every decision is recorded, backfills keep their limit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import peewee
import pytest
from store_steps import claim_one, complete_one

from spane_cli.engine.scheduling import schedule_input
from spane_cli.store import queries
from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.models import Execution
from spane_cli.store.records import Report
from spane_cli.store.schedule_views import late_schedules, recent_fires, require_schedule
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.store.workers import beat, forget
from spane_cli.timeutil import iso, parse_iso
from spane_cli.workflow.schedule_spec import MisfirePolicy, OverlapPolicy, ScheduleSpec

T0 = 1_800_000_000.0  # on an even second
SLACK = 3.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty database of the test's own on each backend: schedules and worker heartbeats
    are global, another test's would fire here."""
    fixture = "sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    database = open_database(request.getfixturevalue(fixture))
    migrate(database)
    yield Store(database)
    database.close()


def workflow_version(store: Store, **extra: Any) -> int:
    data = {"version": 1, "name": "wf", "nodes": {"a": {"type": "noop"}}, **extra}
    return int(register_version(store.database, "wf", data, {}).id)


def add(store: Store, now: float = T0, **fields: Any) -> ScheduleSpec:
    fields.setdefault("every", 2.0)
    spec = ScheduleSpec("every2", **fields)
    store.save_schedule(
        spec, workflow="wf", version_id=workflow_version(store), origin="cli", now=now
    )
    return spec


def fire(store: Store, now: float) -> list[str]:
    return store.fire_schedule("every2", now, schedule_input, SLACK).executions


def fire_times_of(name: str = "every2") -> list[float]:
    rows = Execution.select(Execution.fire_time).where(Execution.schedule == name)
    return sorted(float(r.fire_time) for r in rows)


@pytest.fixture
def worker_alive(store: Store) -> None:
    """A worker that has been running since long before T0 and still beats."""
    beat("w~1", "host", 1, ["default"], now=T0 - 3600)
    beat("w~1", "host", 1, ["default"], now=T0 + 10_000)


def test_each_fire_time_becomes_one_execution(store: Store, worker_alive: None) -> None:
    add(store)
    assert fire(store, T0 + 1) == []  # not due yet: its first fire is T0 + 2
    assert len(fire(store, T0 + 2.3)) == 1
    assert fire(store, T0 + 2.3) == []  # the same tick again fires nothing
    assert len(fire(store, T0 + 10.1)) == 4  # a late tick fires every time it passed
    assert fire_times_of() == [T0 + 2 * i for i in range(1, 6)]
    newest = queries.recent_executions(schedule="every2", limit=2)
    assert [float(e.fire_time) for e in newest] == [T0 + 10, T0 + 8]
    assert [f["decision"] for f in recent_fires("every2", 10)] == ["ran"] * 5


def test_the_unique_key_refuses_a_second_execution_for_a_fire_time(
    store: Store, worker_alive: None
) -> None:
    add(store)
    fire(store, T0 + 2.1)
    execution = Execution.get(Execution.schedule == "every2")
    with pytest.raises(peewee.IntegrityError), store.database.atomic():
        Execution.insert(
            id="another", version=execution.version_id, workflow="wf", status="pending",
            remaining_nodes=1, created_at=T0, schedule="every2", fire_time=T0 + 2,
        ).execute()  # fmt: skip


def test_a_fire_that_dies_midway_leaves_nothing_behind(store: Store, worker_alive: None) -> None:
    add(store)
    made: list[float] = []

    def dies_on_the_second(workflow: Any, spec: ScheduleSpec, fire_time: float) -> Any:
        made.append(fire_time)
        if len(made) == 2:
            raise KeyboardInterrupt  # what a kill does to the transaction: it never commits
        return {}

    with pytest.raises(KeyboardInterrupt):
        store.fire_schedule("every2", T0 + 4.1, dies_on_the_second, SLACK)
    assert fire_times_of() == [] and recent_fires("every2", 5) == []
    assert require_schedule("every2").next_fire_at == T0 + 2  # still due
    assert len(fire(store, T0 + 4.1)) == 2  # the next tick does both


def test_concurrent_tickers_fire_each_time_once(store: Store, worker_alive: None) -> None:
    add(store)
    stores = [Store(store.database) for _ in range(4)]
    errors: list[BaseException] = []

    def ticker(own: Store) -> None:
        try:
            for step in range(30):
                own.fire_schedule("every2", T0 + 0.5 * step, schedule_input, SLACK)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)
        finally:
            own.database.close()

    threads = [threading.Thread(target=ticker, args=(own,)) for own in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert fire_times_of() == [T0 + 2 * i for i in range(1, 8)]


def test_fires_missed_while_no_worker_ran_follow_the_misfire_policy(store: Store) -> None:
    add(store, misfire=MisfirePolicy.SKIP)
    beat("w~1", "host", 1, ["default"], now=T0 - 10)
    beat("w~1", "host", 1, ["default"], now=T0 + 4)
    fire(store, T0 + 4.2)
    forget("w~1")  # every worker stopped at T0 + 5 ...
    beat("w~2", "host", 2, ["default"], now=T0 + 15)  # ... and one started at T0 + 15
    fire(store, T0 + 16.5)
    assert fire_times_of() == [T0 + 2, T0 + 4, T0 + 16]
    fires = recent_fires("every2", 10)
    missed = [f for f in fires if f["decision"] == "missed"]
    assert len(missed) == 1  # one row for the whole outage
    assert missed[0]["count"] == 5
    assert missed[0]["fire_time"] == iso(T0 + 6)
    assert missed[0]["last_fire_time"] == iso(T0 + 14)


def test_overlap_forbid_records_the_skip(store: Store, worker_alive: None) -> None:
    add(store, overlap=OverlapPolicy.FORBID)
    (first,) = fire(store, T0 + 2.1)
    assert fire(store, T0 + 4.1) == []
    fires = recent_fires("every2", 10)
    assert fires[0]["decision"] == "skipped-overlap"
    assert first in fires[0]["reason"]
    claim = claim_one(store, first, "a", 1, "w1")
    assert claim is not None
    complete_one(store, claim, Report("succeeded"))
    assert len(fire(store, T0 + 6.1)) == 1  # the previous one ended: the next fire runs


def test_overlap_replace_asks_for_the_previous_execution_to_end_first(
    store: Store, worker_alive: None
) -> None:
    add(store, overlap=OverlapPolicy.REPLACE)
    (first,) = fire(store, T0 + 2.1)
    outcome = store.fire_schedule("every2", T0 + 4.1, schedule_input, SLACK)
    assert outcome.cancel_first == [first] and not outcome.executions
    assert fire_times_of() == [T0 + 2]  # nothing was written
    store.cancel_replaced(first, "replaced", T0 + 4.1)
    (second,) = fire(store, T0 + 4.1)
    assert queries.execution_status(first) == "cancelled"
    assert require_schedule("every2").last_execution_id == second


def test_the_input_is_rendered_per_fire_in_the_schedule_zone(store: Store) -> None:
    data = {
        "version": 1,
        "name": "wf",
        "inputs": {"date": {"type": "string", "required": True}},
        "nodes": {"a": {"type": "noop"}},
    }
    version_id = int(register_version(store.database, "wf", data, {}).id)
    midnight = parse_iso("2026-12-01T23:00:00Z")  # 00:00 on Dec 2 in Berlin
    spec = ScheduleSpec(
        "nightly", cron="0 0 * * *", timezone="Europe/Berlin",
        input={"date": "{{ schedule.date }}", "at": "{{ schedule.fire_time }}"},
    )  # fmt: skip
    store.save_schedule(spec, workflow="wf", version_id=version_id, origin="cli", now=midnight - 60)
    with pytest.raises(Exception, match="unknown input"):
        schedule_input(store.versions.get(version_id).workflow, spec, midnight)
    spec = ScheduleSpec(spec.name, cron=spec.cron, timezone=spec.timezone,
                        input={"date": "{{ schedule.date }}"})  # fmt: skip
    store.save_schedule(
        spec, workflow="wf", version_id=version_id, origin="cli", now=midnight - 60, replace=True
    )
    beat("w~1", "host", 1, ["default"], now=midnight - 120)
    beat("w~1", "host", 1, ["default"], now=midnight + 1)
    (execution_id,) = store.fire_schedule("nightly", midnight + 1, schedule_input, SLACK).executions
    assert Execution.get_by_id(execution_id).input == {"date": "2026-12-02"}


def test_a_fire_whose_input_cannot_be_made_is_recorded_failed(
    store: Store, worker_alive: None
) -> None:
    data = {"version": 1, "name": "wf", "inputs": {"n": {"type": "integer", "required": True}},
            "nodes": {"a": {"type": "noop"}}}  # fmt: skip
    version_id = int(register_version(store.database, "wf", data, {}).id)
    store.save_schedule(
        ScheduleSpec("every2", every=2.0), workflow="wf", version_id=version_id, origin="cli",
        now=T0,
    )  # fmt: skip
    assert fire(store, T0 + 2.1) == []
    (failed,) = recent_fires("every2", 5)
    assert failed["decision"] == "failed" and "missing required input" in failed["reason"]
    assert require_schedule("every2").next_fire_at == T0 + 4  # the schedule goes on


def test_pause_and_resume_skip_the_paused_fires(store: Store, worker_alive: None) -> None:
    add(store)
    fire(store, T0 + 2.1)
    store.set_schedule_paused("every2", True, now=T0 + 3)
    assert fire(store, T0 + 9) == []
    assert store.due_schedule_work(T0 + 9) == []
    store.set_schedule_paused("every2", False, now=T0 + 9)
    fire(store, T0 + 10.1)
    assert fire_times_of() == [T0 + 2, T0 + 10]


def test_a_manual_run_is_its_own_fire(store: Store, worker_alive: None) -> None:
    add(store)
    execution_id, dispatches = store.fire_schedule_now("every2", schedule_input, now=T0 + 0.7)
    assert [d.node_id for d in dispatches] == ["a"]
    assert Execution.get_by_id(execution_id).fire_time == T0 + 0.7
    assert recent_fires("every2", 1)[0]["origin"] == "manual"


def test_a_backfill_runs_every_hour_of_a_day_max_parallel_at_a_time(
    store: Store, worker_alive: None
) -> None:
    workflow_version(store)
    spec = ScheduleSpec("hourly", cron="0 * * * *", max_parallel=3)
    store.save_schedule(spec, workflow="wf", version_id=None, origin="cli", now=T0)
    start, end = parse_iso("2026-11-01T00:00:00Z"), parse_iso("2026-11-02T00:00:00Z")
    backfill_id, count = store.start_backfill("hourly", start, end, now=T0)
    assert count == 25
    most_open = 0
    for _ in range(40):
        outcome = store.advance_backfill(backfill_id, T0, schedule_input)
        open_now = queries.open_executions()
        most_open = max(most_open, len(open_now))
        for execution in open_now:  # they end, leaving room for the next ones
            store.cancel(execution.id)
        if not outcome.executions and not open_now:
            break
    assert most_open == 3
    assert fire_times_of("hourly") == [start + 3600 * i for i in range(25)]
    assert store.due_schedule_work(T0) == []  # the backfill is finished
    again, _ = store.start_backfill("hourly", start, start + 7200, now=T0)
    store.advance_backfill(again, T0, schedule_input)
    assert len(fire_times_of("hourly")) == 25  # fire times that ran are not run twice
    assert recent_fires("hourly", 1)[0]["decision"] == "already-ran"


def test_late_schedules_are_the_ones_no_worker_fired(store: Store) -> None:
    add(store)
    assert late_schedules(T0 + 30) == []
    (late,) = late_schedules(T0 + 120)
    assert late["name"] == "every2" and late["due"] == iso(T0 + 2)
