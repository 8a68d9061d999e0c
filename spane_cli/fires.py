"""Schedules, decided: when a schedule fires, and what is done with each fire time. Pure:
time comes in as epoch seconds (`now`), so every rule is tested with a test clock.

Fire times
    `cron:` expressions are read by croniter in the schedule's time zone (zoneinfo), on wall
    clock times; each wall time then becomes one instant:
    - a wall time that does not exist (inside a spring-forward gap, 02:30 on the night
      Europe/Berlin goes from 02:00 to 03:00) fires once, at the shift itself (03:00 CEST,
      01:00 UTC); several wall times inside one gap are that one fire;
    - a wall time that exists twice (the repeated hour of a fall-back night) fires once, at
      its first occurrence (02:30 CEST, not 02:30 CET again).
    `every:` fires at whole multiples of the interval since the Unix epoch (every 2s on even
    seconds, every 1h on the hour UTC), in real time: no time zone, no DST.

What a fire does
    A fire time is *on time* when a worker was running at that moment (its tick may still
    be late: a busy database, a restart). It is *missed* when no worker was (all of them
    stopped); `misfire` then says which missed fires run: `skip` none, `once` the latest,
    `all` each. A fire that could not start within `starting_deadline` of its time is
    missed whatever the policy. The fires that run then meet `overlap`: with `forbid` a fire
    is skipped while the previous execution is open, with `replace` the previous one is
    cancelled and only the latest fire of a catch-up runs.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from spane_cli.timeutil import iso
from spane_cli.workflow.schedule_spec import MisfirePolicy, OverlapPolicy, ScheduleSpec

# Fire times computed per call at most: a cron that fires every second over a long outage
# would otherwise be enumerated without end.
MAX_FIRE_TIMES = 10_000


def fire_times(spec: ScheduleSpec, after: float, until: float, limit: int) -> list[float]:
    """The fire times t with after < t <= until, oldest first, at most `limit`."""
    if limit <= 0 or until <= after:
        return []
    if spec.every is not None:
        return _every_times(spec.every, after, until, limit)
    if spec.cron is None:
        return []
    return _cron_times(spec.cron, zoneinfo.ZoneInfo(spec.timezone), after, until, limit)


def next_fire_times(spec: ScheduleSpec, after: float, count: int) -> list[float]:
    """The next `count` fire times after `after` (fewer for a cron that rarely matches)."""
    return fire_times(spec, after, math.inf, count)


def next_fire_time(spec: ScheduleSpec, after: float) -> float | None:
    found = next_fire_times(spec, after, 1)
    return found[0] if found else None


def _every_times(every: float, after: float, until: float, limit: int) -> list[float]:
    times: list[float] = []
    step = math.floor(after / every) + 1
    while len(times) < limit:
        moment = round(step * every, 3)
        if moment > until:
            break
        if moment > after:
            times.append(moment)
        step += 1
    return times


def _cron_times(
    expression: str, zone: zoneinfo.ZoneInfo, after: float, until: float, limit: int
) -> list[float]:
    from croniter import CroniterBadDateError, croniter  # 40 ms to import: only for a cron

    # Walk wall clock times (naive datetimes): each appears once, whatever DST does.
    start = dt.datetime.fromtimestamp(after, zone).replace(tzinfo=None)
    # The wall clock can be an hour behind `after` (the second pass of a repeated hour):
    # start early and drop what is not after `after`.
    walker = croniter(expression, start - dt.timedelta(hours=3))
    times: list[float] = []
    last = -math.inf
    while len(times) < limit:
        try:
            wall = walker.get_next(dt.datetime)
        except CroniterBadDateError:  # a date that never comes (February 30)
            break
        moment = wall_time_instant(wall, zone)
        if moment > until:
            break
        if moment > after and moment > last:  # the wall times of one gap are one fire
            times.append(moment)
            last = moment
    return times


def wall_time_instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> float:
    """The instant a wall clock time in `zone` fires at: itself; its first occurrence when
    it exists twice; the end of the gap (the moment of the shift) when it does not exist."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.timestamp()
    if dt.datetime.fromtimestamp(instant, zone).replace(tzinfo=None) == wall:
        return instant  # exists (for a repeated time, fold=0 is the first occurrence)
    # Inside a gap: fold 0 and fold 1 read it with the offsets before and after the shift,
    # and the shift lies between those two instants.
    other = wall.replace(tzinfo=zone, fold=1).timestamp()
    low, high = math.floor(min(instant, other)), math.ceil(max(instant, other))
    after_shift = dt.datetime.fromtimestamp(high, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == after_shift:
            high = middle
        else:
            low = middle
    return float(high)


# -- what each fire does ----------------------------------------------------------------------


class Decision(StrEnum):
    RAN = "ran"
    SKIPPED_OVERLAP = "skipped-overlap"
    MISSED = "missed"
    FAILED = "failed"  # it should have run, but its input could not be prepared
    ALREADY_RAN = "already-ran"  # a backfill or a manual run made this fire time's execution


@dataclass(frozen=True)
class FirePlan:
    fire_time: float
    decision: Decision
    reason: str
    replaces: str | None = None  # the open execution this run cancels (overlap replace)


def was_covered(moment: float, worker_spans: Sequence[tuple[float, float]]) -> bool:
    """Whether a worker was running at `moment`: spans are (started, last seen alive)."""
    return any(start <= moment <= end for start, end in worker_spans)


def plan_fires(
    spec: ScheduleSpec,
    due: Sequence[float],
    now: float,
    worker_spans: Sequence[tuple[float, float]],
    open_execution: str | None,
) -> list[FirePlan]:
    """What to do with each due fire time (oldest first): the misfire policy, the
    starting deadline, then the overlap policy against `open_execution`, the schedule's
    previous execution when it has not ended."""
    plans: dict[float, FirePlan] = {}
    candidates: list[tuple[float, str]] = []
    missed_by_policy: list[float] = []
    for moment in due:
        late = now - moment
        if spec.starting_deadline is not None and late > spec.starting_deadline:
            plans[moment] = FirePlan(
                moment,
                Decision.MISSED,
                f"not started within starting_deadline ({spec.starting_deadline:g}s)",
            )
        elif was_covered(moment, worker_spans):
            candidates.append((moment, "on time" if late < 60 else f"late by {late:.0f}s"))
        else:
            missed_by_policy.append(moment)
    if spec.misfire is MisfirePolicy.ALL:
        candidates += [
            (m, "no worker was running: caught up (misfire all)") for m in missed_by_policy
        ]
    else:
        keep = missed_by_policy[-1:] if spec.misfire is MisfirePolicy.ONCE else []
        candidates += [(m, "no worker was running: run once (misfire once)") for m in keep]
        for moment in missed_by_policy:
            if moment not in keep:
                plans[moment] = FirePlan(
                    moment, Decision.MISSED, f"no worker was running (misfire {spec.misfire})"
                )
    candidates.sort()
    for plan in _apply_overlap(spec.overlap, candidates, open_execution):
        plans[plan.fire_time] = plan
    return [plans[moment] for moment in sorted(plans)]


def _apply_overlap(
    overlap: OverlapPolicy, candidates: list[tuple[float, str]], open_execution: str | None
) -> list[FirePlan]:
    if not candidates:
        return []
    if overlap is OverlapPolicy.ALLOW:
        return [FirePlan(m, Decision.RAN, reason) for m, reason in candidates]
    if overlap is OverlapPolicy.FORBID:
        if open_execution is not None:
            return [
                FirePlan(m, Decision.SKIPPED_OVERLAP, f"execution {open_execution} still open")
                for m, _ in candidates
            ]
        first, reason = candidates[0]
        return [FirePlan(first, Decision.RAN, reason)] + [
            FirePlan(m, Decision.SKIPPED_OVERLAP, "the fire before it is still open")
            for m, _ in candidates[1:]
        ]
    last, reason = candidates[-1]
    return [
        FirePlan(m, Decision.SKIPPED_OVERLAP, "replaced by a later fire of the same catch-up")
        for m, _ in candidates[:-1]
    ] + [FirePlan(last, Decision.RAN, reason, replaces=open_execution)]


# -- what templates see -----------------------------------------------------------------------


def schedule_scope(
    schedule: tuple[str, float] | None, timezone: str | None = None
) -> dict[str, object] | None:
    """`schedule` in templates: null for an execution no schedule made. Nodes see the name,
    the fire time (ISO 8601 UTC) and its epoch seconds; the schedule's own `input:` is
    rendered at fire time with the local time and date in the schedule's zone as well."""
    if schedule is None:
        return None
    name, moment = schedule
    scope: dict[str, object] = {"name": name, "fire_time": iso(moment), "epoch": moment}
    if timezone is not None:
        local = dt.datetime.fromtimestamp(moment, zoneinfo.ZoneInfo(timezone))
        scope.update(
            timezone=timezone,
            local_time=local.isoformat(timespec="seconds"),
            date=local.date().isoformat(),
        )
    return scope
