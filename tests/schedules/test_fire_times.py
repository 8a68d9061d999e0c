"""When schedules fire: cron in a time zone across DST, intervals, seconds fields. Pure, on a
test clock: every time is an argument."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from spane_cli.fires import fire_times, next_fire_times, wall_time_instant
from spane_cli.timeutil import iso, parse_iso
from spane_cli.workflow.schedule_spec import ScheduleSpec

BERLIN = "Europe/Berlin"


def times(spec: ScheduleSpec, after: str, count: int) -> list[str]:
    return [iso(t) or "" for t in next_fire_times(spec, parse_iso(after), count)]


def local(moments: list[str], zone: str) -> list[str]:
    tz = zoneinfo.ZoneInfo(zone)
    return [dt.datetime.fromtimestamp(parse_iso(m), tz).isoformat() for m in moments]


def test_a_daily_time_inside_the_spring_forward_gap_runs_once_at_the_shift() -> None:
    # 2027-03-28: Berlin goes from 02:00 CET straight to 03:00 CEST; 02:30 does not exist.
    spec = ScheduleSpec("nightly", cron="30 2 * * *", timezone=BERLIN)
    fired = times(spec, "2027-03-26T12:00:00Z", 3)
    assert local(fired, BERLIN) == [
        "2027-03-27T02:30:00+01:00",
        "2027-03-28T03:00:00+02:00",  # at the shift, once
        "2027-03-29T02:30:00+02:00",
    ]
    assert fired[1] == "2027-03-28T01:00:00.000Z"


def test_several_times_inside_one_gap_are_one_fire() -> None:
    spec = ScheduleSpec("halfhourly", cron="*/30 * * * *", timezone=BERLIN)
    fired = local(times(spec, "2027-03-28T00:15:00Z", 4), BERLIN)
    # 02:00 and 02:30 do not exist: one fire at 03:00, then 03:30 as usual.
    assert fired == [
        "2027-03-28T01:30:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-03-28T03:30:00+02:00",
        "2027-03-28T04:00:00+02:00",
    ]


def test_a_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25: Berlin goes from 03:00 CEST back to 02:00 CET; 02:00-02:59 happens twice.
    daily = ScheduleSpec("nightly", cron="30 2 * * *", timezone=BERLIN)
    assert local(times(daily, "2026-10-24T12:00:00Z", 2), BERLIN) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    hourly = ScheduleSpec("hourly", cron="0 * * * *", timezone=BERLIN)
    fired = local(times(hourly, "2026-10-24T22:30:00Z", 4), BERLIN)
    assert fired == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",  # the repeated 02:00 CET does not fire again
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]


def test_starting_in_the_second_pass_of_a_repeated_hour_does_not_fire_it_again() -> None:
    daily = ScheduleSpec("nightly", cron="30 2 * * *", timezone=BERLIN)
    # 02:45 CET, after 02:30 CEST fired an hour of real time ago.
    assert times(daily, "2026-10-25T01:45:00Z", 1) == ["2026-10-26T01:30:00.000Z"]


def test_wall_times_map_to_instants() -> None:
    zone = zoneinfo.ZoneInfo(BERLIN)
    gap = wall_time_instant(dt.datetime(2027, 3, 28, 2, 30), zone)
    assert iso(gap) == "2027-03-28T01:00:00.000Z"
    repeated = wall_time_instant(dt.datetime(2026, 10, 25, 2, 30), zone)
    assert iso(repeated) == "2026-10-25T00:30:00.000Z"
    plain = wall_time_instant(dt.datetime(2026, 12, 1, 8, 0), zone)
    assert iso(plain) == "2026-12-01T07:00:00.000Z"


def test_every_is_aligned_to_the_epoch_in_real_time() -> None:
    spec = ScheduleSpec("fast", every=2.0)
    assert times(spec, "2026-12-01T10:00:00.500Z", 3) == [
        "2026-12-01T10:00:02.000Z",
        "2026-12-01T10:00:04.000Z",
        "2026-12-01T10:00:06.000Z",
    ]
    # Across the Berlin fall-back night, an interval keeps counting real seconds.
    hourly = ScheduleSpec("h", every=3600.0, timezone=BERLIN)
    assert len(times(hourly, "2026-10-24T22:00:00Z", 5)) == 5
    assert times(hourly, "2026-10-24T22:00:00Z", 5)[-1] == "2026-10-25T03:00:00.000Z"


def test_a_sixth_field_is_seconds() -> None:
    spec = ScheduleSpec("seconds", cron="* * * * * */15")
    assert times(spec, "2026-12-01T10:00:01Z", 3) == [
        "2026-12-01T10:00:15.000Z",
        "2026-12-01T10:00:30.000Z",
        "2026-12-01T10:00:45.000Z",
    ]


def test_fire_times_between_two_moments_are_bounded_and_ordered() -> None:
    spec = ScheduleSpec("hourly", cron="0 * * * *")
    start, end = parse_iso("2026-12-01T00:00:00Z"), parse_iso("2026-12-02T00:00:00Z")
    day = fire_times(spec, start - 0.0005, end, 100)
    assert len(day) == 25  # both ends included
    assert day == sorted(day)
    assert fire_times(spec, start, end, 3) == day[1:4]


@pytest.mark.parametrize("expression", ["0 0 30 2 *"])
def test_a_cron_that_never_matches_has_no_fire_times(expression: str) -> None:
    spec = ScheduleSpec("never", cron=expression)
    assert next_fire_times(spec, parse_iso("2026-12-01T00:00:00Z"), 2) == []
