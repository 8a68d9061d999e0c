"""`spane schedule ...` as an operator uses it: declared in a file, added on the command line,
inspected, paused, fired by hand, backfilled; bad schedules refused with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_spane

FLOW = """version: 1
name: nightly
inputs:
  date: {type: string, required: true}
schedule:
  - cron: "30 2 * * *"
    timezone: Europe/Berlin
    input: {date: "{{ schedule.date }}"}
    misfire: skip
  - name: nightly-fast
    every: 2s
    overlap: forbid
    input: {date: "{{ schedule.fire_time }}"}
nodes:
  a: {type: noop}
"""


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(FLOW)
    return path


def spane_json(*args: str) -> object:
    result = run_spane("-o", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_apply_registers_every_schedule_of_the_file(sqlite_url: str, flow_file: Path) -> None:
    assert spane_json("--db", sqlite_url, "schedule", "apply", str(flow_file)) == [
        {"name": "nightly", "created": True},
        {"name": "nightly-fast", "created": True},
    ]
    listed = spane_json("--db", sqlite_url, "schedule", "list")
    assert isinstance(listed, list)
    assert [s["name"] for s in listed] == ["nightly", "nightly-fast"]
    nightly = listed[0]
    assert nightly["cron"] == "30 2 * * *" and nightly["timezone"] == "Europe/Berlin"
    assert nightly["misfire"] == "skip" and nightly["overlap"] == "allow"
    assert nightly["origin"] == "file" and nightly["version"] == 1
    again = spane_json("--db", sqlite_url, "schedule", "apply", str(flow_file))
    assert again == [
        {"name": "nightly", "created": False},
        {"name": "nightly-fast", "created": False},
    ]
    table = run_spane("--db", sqlite_url, "schedule", "get", "nightly")
    assert table.exit_code == 0 and "no fires yet" in table.stdout


def test_next_shows_fire_times_across_the_berlin_dst_change(
    sqlite_url: str, flow_file: Path
) -> None:
    run_spane("--db", sqlite_url, "schedule", "apply", str(flow_file))
    after = "2027-03-26T12:00:00Z"
    spring = spane_json(
        "--db", sqlite_url, "schedule", "next", "nightly", "-n", "3", "--after", after
    )
    assert spring == [
        {"fire_time": "2027-03-27T01:30:00.000Z", "local_time": "2027-03-27T02:30:00+01:00",
         "timezone": "Europe/Berlin"},
        {"fire_time": "2027-03-28T01:00:00.000Z", "local_time": "2027-03-28T03:00:00+02:00",
         "timezone": "Europe/Berlin"},
        {"fire_time": "2027-03-29T00:30:00.000Z", "local_time": "2027-03-29T02:30:00+02:00",
         "timezone": "Europe/Berlin"},
    ]  # fmt: skip
    autumn = run_spane(
        "--db", sqlite_url, "schedule", "next", "nightly", "-n", "2", "--after", "2026-10-24T12:00Z"
    )
    assert autumn.stdout.splitlines() == [
        "2026-10-25T02:30:00+02:00  2026-10-25T00:30:00.000Z",
        "2026-10-26T02:30:00+01:00  2026-10-26T01:30:00.000Z",
    ]


def test_add_pause_resume_rm(sqlite_url: str, flow_file: Path) -> None:
    db = ("--db", sqlite_url)
    added = run_spane(*db, "schedule", "add", "hourly", str(flow_file), "--cron", "0 * * * *",
                      "-i", "date={{ schedule.date }}", "--overlap", "replace")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "schedule hourly added" in added.stdout
    twice = run_spane(*db, "schedule", "add", "hourly", str(flow_file), "--every", "1h",
                      "-i", "date=x")  # fmt: skip
    assert twice.exit_code == 1 and "exists" in twice.stderr
    replaced = run_spane(*db, "schedule", "add", "hourly", "nightly", "--every", "1h",
                         "-i", "date=x", "--replace")  # fmt: skip
    assert replaced.exit_code == 0 and "updated" in replaced.stdout
    view = spane_json(*db, "schedule", "get", "hourly")
    assert isinstance(view, dict)
    assert view["every"] == 3600.0 and view["cron"] is None and view["version"] == "latest"
    assert run_spane(*db, "schedule", "pause", "hourly").exit_code == 0
    paused = spane_json(*db, "schedule", "get", "hourly")
    assert isinstance(paused, dict) and paused["paused"] and paused["next_fire_time"] is None
    assert "resumed" in run_spane(*db, "schedule", "resume", "hourly").stdout
    assert run_spane(*db, "schedule", "rm", "hourly").exit_code == 0
    gone = run_spane(*db, "schedule", "get", "hourly")
    assert gone.exit_code == 4 and gone.stderr.strip() == "spane: no schedule 'hourly'"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--cron", "61 * * * *"), 2, "not a valid cron expression"),
        (("--cron", "* * *"), 2, "must have 5 fields"),
        (("--every", "500ms"), 2, "shorter than the shortest interval"),
        (("--cron", "0 * * * *", "--every", "1h"), 2, "exactly one of --cron and --every"),
        (("--cron", "0 * * * *", "--tz", "Mars/Olympus"), 2, "unknown time zone"),
        (("--cron", "0 * * * *", "--overlap", "sometimes"), 2, "'sometimes' is not a valid"),
        (("--every", "1h"), 2, "missing required input 'date'"),
        (("--every", "1h", "-i", "date={{ nope("), 2, "schedule 'bad'"),
    ],
)
def test_bad_schedules_are_refused_with_one_line(
    sqlite_url: str, flow_file: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    result = run_spane("--db", sqlite_url, "schedule", "add", "bad", str(flow_file), *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_add_without_cron_or_every_takes_the_file_schedule(
    sqlite_url: str, flow_file: Path
) -> None:
    db = ("--db", sqlite_url)
    added = run_spane(*db, "schedule", "add", "nightly-fast", str(flow_file))
    assert added.exit_code == 0, added.output
    view = spane_json(*db, "schedule", "get", "nightly-fast")
    assert isinstance(view, dict)
    assert view["every"] == 2.0 and view["overlap"] == "forbid" and view["origin"] == "file"
    unknown = run_spane(*db, "schedule", "add", "other", str(flow_file))
    assert unknown.exit_code == 2 and "declares no schedule 'other'" in unknown.stderr


def test_add_names_a_workflow_that_must_exist(sqlite_url: str) -> None:
    result = run_spane("--db", sqlite_url, "schedule", "add", "x", "no-such-flow", "--every", "1h")
    assert result.exit_code == 4
    assert "neither a file nor a registered workflow" in result.stderr


def test_validate_reports_bad_schedules_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nname: bad\nschedule:\n"
        "  - {cron: '99 * * * *'}\n"
        "  - {name: bad, every: 2s, timezone: Nowhere/Land}\n"
        "  - {every: 1s, cron: '* * * * *', misfire: never}\n"
        "nodes:\n  a: {type: noop}\n"
    )
    result = run_spane("validate", str(path))
    assert result.exit_code == 2
    text = result.output
    assert f"{path}:4:" in text and "not a valid cron expression" in text
    assert "schedule 'bad' is declared twice" in text
    assert "unknown time zone 'Nowhere/Land'" in text
    assert "exactly one of `cron` and `every`" in text
    assert "never" in text


def test_backfill_is_recorded_for_the_workers(sqlite_url: str, flow_file: Path) -> None:
    db = ("--db", sqlite_url)
    run_spane(*db, "schedule", "add", "hourly", str(flow_file), "--cron", "0 * * * *",
              "-i", "date={{ schedule.date }}")  # fmt: skip
    started = spane_json(*db, "schedule", "backfill", "hourly", "--from", "2026-11-01T00:00:00Z",
                         "--to", "2026-11-02T00:00:00Z", "--max-parallel", "4")  # fmt: skip
    assert started == {"id": 1, "schedule": "hourly", "fire_times": 25}
    view = spane_json(*db, "schedule", "get", "hourly")
    assert isinstance(view, dict)
    assert view["backfills"][0]["max_parallel"] == 4 and view["backfills"][0]["finished_at"] is None
    backwards = run_spane(*db, "schedule", "backfill", "hourly", "--from", "2026-11-02T00:00:00Z",
                          "--to", "2026-11-01T00:00:00Z")  # fmt: skip
    assert backwards.exit_code == 2 and "--to is before --from" in backwards.stderr
    bad_time = run_spane(*db, "schedule", "backfill", "hourly", "--from", "yesterday",
                         "--to", "2026-11-01T00:00:00Z")  # fmt: skip
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.stderr


def test_run_fires_now_and_list_shows_the_schedule(
    sqlite_url: str, redis_url: str, flow_file: Path
) -> None:
    db = ("--db", sqlite_url, "--redis", redis_url)
    run_spane(*db, "schedule", "apply", str(flow_file))
    fired = run_spane(*db, "schedule", "run", "nightly-fast")
    assert fired.exit_code == 0, fired.output
    execution_id = fired.stdout.strip()
    listed = spane_json(*db, "list", "--schedule", "nightly-fast")
    assert isinstance(listed, list) and [e["id"] for e in listed] == [execution_id]
    assert listed[0]["schedule"] == "nightly-fast"
    assert listed[0]["input"] == {"date": listed[0]["fire_time"]}
    assert spane_json(*db, "list", "--schedule", "nightly") == []
    shown = run_spane(*db, "get", execution_id)
    assert f"fired by schedule nightly-fast for {listed[0]['fire_time']}" in shown.stdout
    view = spane_json(*db, "schedule", "get", "nightly-fast")
    assert isinstance(view, dict)
    assert view["fires"][0]["decision"] == "ran" and view["fires"][0]["origin"] == "manual"


def test_health_names_a_late_schedule(sqlite_url: str, redis_url: str, tmp_path: Path) -> None:
    import time

    from spane_cli.store.db import open_database
    from spane_cli.store.migrations import migrate
    from spane_cli.store.models import Schedule
    from spane_cli.store.store import Store

    path = tmp_path / "late.yaml"
    path.write_text("version: 1\nname: late\nschedule: {every: 1m}\nnodes:\n  a: {type: noop}\n")
    db = ("--db", sqlite_url, "--redis", redis_url)
    assert run_spane(*db, "schedule", "apply", str(path)).exit_code == 0
    database = open_database(sqlite_url)
    migrate(database)
    Store(database)
    # Its next fire was due five minutes ago and no worker has fired it.
    Schedule.update(next_fire_at=time.time() - 300).execute()
    database.close()
    result = run_spane(*db, "-o", "json", "health")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [s["name"] for s in report["late_schedules"]] == ["late"]
    assert any("schedule late is late" in p for p in report["problems"])
    view = spane_json(*db, "schedule", "get", "late")
    assert isinstance(view, dict) and view["late"] is True


def test_health_on_a_database_from_before_schedules(sqlite_url: str, redis_url: str) -> None:
    from spane_cli.store.db import open_database
    from spane_cli.store.migrations import migrate

    database = open_database(sqlite_url)
    migrate(database)
    for table in ("schedule", "schedule_fire", "schedule_backfill"):
        database.execute_sql(f"DROP TABLE {table}")
    database.execute_sql("DELETE FROM schema_version WHERE version >= 3")
    database.close()
    result = run_spane("--db", sqlite_url, "--redis", redis_url, "-o", "json", "health")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["late_schedules"] == []
    assert any("schema is behind" in p for p in report["problems"])
