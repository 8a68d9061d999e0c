"""Schedules in the language: the `schedule:` block of a workflow file and the checks on it.

A schedule says when a workflow runs by itself (`cron:` or `every:`), in which time zone,
with which input, and what to do when a run would overlap the previous one or when fires
were missed while no worker ran. The fire times themselves are computed in
`spane_cli.fires`; this module only knows what a valid schedule looks like.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from spane_cli.workflow.durations import DurationError, parse_duration

SCHEDULE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,127}$"
MIN_EVERY_SECONDS = 1.0


class OverlapPolicy(StrEnum):
    """What a fire does while the schedule's previous execution is still open (Kubernetes
    CronJob's concurrencyPolicy)."""

    ALLOW = "allow"  # run alongside it
    FORBID = "forbid"  # skip this fire
    REPLACE = "replace"  # cancel the previous execution, then run


class MisfirePolicy(StrEnum):
    """What happens to fire times that passed while no worker was running (Airflow's
    catch-up), among those still within `starting_deadline`."""

    SKIP = "skip"  # none of them run
    ONCE = "once"  # the latest of them runs, once
    ALL = "all"  # every one of them runs, oldest first


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    cron: str | None = None
    every: float | None = None  # seconds
    timezone: str = "UTC"
    input: Mapping[str, Any] = field(default_factory=dict)  # values may be templates
    overlap: OverlapPolicy = OverlapPolicy.ALLOW
    misfire: MisfirePolicy = MisfirePolicy.ONCE
    starting_deadline: float | None = None  # seconds; None: no limit
    max_parallel: int = 1  # backfill: how many of its executions are open at a time

    def to_data(self) -> dict[str, Any]:
        """The JSON the store keeps (and `from_data` reads back)."""
        return {
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "input": dict(self.input),
            "overlap": str(self.overlap),
            "misfire": str(self.misfire),
            "starting_deadline": self.starting_deadline,
            "max_parallel": self.max_parallel,
        }

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any]) -> ScheduleSpec:
        """From a validated `schedule:` entry or from what `to_data` wrote."""
        every = data.get("every")
        deadline = data.get("starting_deadline")
        return cls(
            name=name,
            cron=data.get("cron"),
            every=parse_duration(every) if every is not None else None,
            timezone=data.get("timezone") or "UTC",
            input=dict(data.get("input") or {}),
            overlap=OverlapPolicy(data.get("overlap") or "allow"),
            misfire=MisfirePolicy(data.get("misfire") or "once"),
            starting_deadline=parse_duration(deadline) if deadline is not None else None,
            max_parallel=int(data.get("max_parallel") or 1),
        )


def schedule_entries(workflow_name: str, raw: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """(schedule name, entry) of a `schedule:` value: one mapping or a list of them. A
    schedule without `name` is named after the workflow (the first) or `<workflow>-<n>`."""
    if raw is None:
        return []
    entries = raw if isinstance(raw, list) else [raw]
    named: list[tuple[str, Mapping[str, Any]]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        default = workflow_name if index == 0 else f"{workflow_name}-{index + 1}"
        named.append((str(entry.get("name") or default), entry))
    return named


def schedule_problems(entry: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(field, message) for what the JSON Schema cannot see in one schedule entry."""
    problems: list[tuple[str | None, str]] = []
    cron, every = entry.get("cron"), entry.get("every")
    if (cron is None) == (every is None):
        problems.append((None, "a schedule needs exactly one of `cron` and `every`"))
    if isinstance(cron, str):
        message = cron_problem(cron)
        if message:
            problems.append(("cron", message))
    if every is not None:
        message = every_problem(every)
        if message:
            problems.append(("every", message))
    zone = entry.get("timezone")
    if isinstance(zone, str):
        message = timezone_problem(zone)
        if message:
            problems.append(("timezone", message))
    return problems


def cron_problem(expression: str) -> str | None:
    """Five fields (minute hour day month weekday), or six with seconds last, as croniter
    reads them; None when valid."""
    from croniter import croniter  # 40 ms to import: only when there is a cron to read

    fields = expression.split()
    if len(fields) not in (5, 6):
        return f"cron {expression!r} must have 5 fields (or 6, seconds last), not {len(fields)}"
    if not croniter.is_valid(expression):
        return f"cron {expression!r} is not a valid cron expression"
    return None


def every_problem(value: Any) -> str | None:
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        return str(exc)
    if seconds < MIN_EVERY_SECONDS:
        return f"every {value!r} is shorter than the shortest interval, 1s"
    return None


def timezone_problem(zone: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {zone!r} (use an IANA name such as Europe/Berlin)"
    return None
