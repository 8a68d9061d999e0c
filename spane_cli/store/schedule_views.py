"""Schedules as the command line shows them (`spane schedule list|get`, `spane health`): the
reads and the JSON shapes. Nothing here writes."""

from __future__ import annotations

import time
from typing import Any

from spane_cli.errors import NotFound
from spane_cli.store.models import (
    Execution,
    Schedule,
    ScheduleBackfill,
    ScheduleFire,
    WorkflowVersion,
)
from spane_cli.timeutil import iso

# A due fire that no worker has dealt with this long after its time is late (`spane health`):
# ticks run every second, so this much means no worker is firing schedules.
LATE_AFTER_SECONDS = 60.0


def require_schedule(name: str) -> Schedule:
    row = Schedule.get_or_none(Schedule.name == name)
    if row is None:
        raise NotFound(f"no schedule {name!r}")
    return row


def all_schedules() -> list[Schedule]:
    return list(Schedule.select().order_by(Schedule.name))


def late_schedules(now: float, late_after: float = LATE_AFTER_SECONDS) -> list[dict[str, Any]]:
    """Schedules not paused whose next fire is more than `late_after` seconds overdue."""
    rows = Schedule.select().where(
        (Schedule.paused == False)  # noqa: E712 - peewee builds SQL from the comparison
        & (Schedule.next_fire_at < now - late_after)
    )
    return [
        {
            "name": row.name,
            "due": iso(row.next_fire_at),
            "late_seconds": round(now - float(row.next_fire_at or now), 1),
        }
        for row in rows.order_by(Schedule.name)
    ]


def schedule_view(row: Schedule, with_fires: int = 0, now: float | None = None) -> dict[str, Any]:
    """The schedule; with its newest `with_fires` decisions and its backfills when > 0."""
    now = time.time() if now is None else now
    spec = row.spec
    version: int | str = "latest"
    if row.version_id is not None:
        found = WorkflowVersion.get_or_none(WorkflowVersion.id == row.version_id)
        version = int(found.number) if found is not None else "latest"
    view: dict[str, Any] = {
        "name": row.name,
        "workflow": row.workflow,
        "version": version,
        "origin": row.origin,
        "source_file": row.source_file,
        "cron": spec.get("cron"),
        "every": spec.get("every"),
        "timezone": spec.get("timezone"),
        "input": spec.get("input") or {},
        "overlap": spec.get("overlap"),
        "misfire": spec.get("misfire"),
        "starting_deadline": spec.get("starting_deadline"),
        "max_parallel": spec.get("max_parallel"),
        "paused": bool(row.paused),
        "next_fire_time": None if row.paused else iso(row.next_fire_at),
        # Due for over a minute and not fired: no worker is firing schedules.
        "late": not row.paused
        and row.next_fire_at is not None
        and float(row.next_fire_at) < now - LATE_AFTER_SECONDS,
        "last_execution_id": row.last_execution_id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    if with_fires > 0:
        view["fires"] = recent_fires(str(row.name), with_fires)
        view["backfills"] = [
            backfill_view(b)
            for b in ScheduleBackfill.select()
            .where(ScheduleBackfill.schedule == row.name)
            .order_by(ScheduleBackfill.id.desc())
            .limit(10)
        ]
    return view


def recent_fires(name: str, limit: int) -> list[dict[str, Any]]:
    """The newest decisions first, each with the status of the execution it made."""
    fires = list(
        ScheduleFire.select()
        .where(ScheduleFire.schedule == name)
        .order_by(ScheduleFire.id.desc())
        .limit(limit)
    )
    ids = [f.execution_id for f in fires if f.execution_id]
    statuses = {
        e.id: e.status
        for e in Execution.select(Execution.id, Execution.status).where(Execution.id.in_(ids))
    }
    views = []
    for fire in fires:
        detail = fire.detail or {}
        views.append(
            {
                "fire_time": iso(fire.fire_time),
                "decision": fire.decision,
                "origin": fire.origin,
                "execution_id": fire.execution_id,
                "execution_status": statuses.get(fire.execution_id or ""),
                "reason": detail.get("reason"),
                "count": detail.get("count", 1),
                "last_fire_time": detail.get("last", iso(fire.fire_time)),
                "recorded_at": iso(fire.created_at),
            }
        )
    return views


def backfill_view(backfill: ScheduleBackfill) -> dict[str, Any]:
    return {
        "id": backfill.id,
        "from": iso(backfill.from_time),
        "to": iso(backfill.to_time),
        "max_parallel": backfill.max_parallel,
        "running": list(backfill.running),
        "created_at": iso(backfill.created_at),
        "finished_at": iso(backfill.finished_at),
    }
