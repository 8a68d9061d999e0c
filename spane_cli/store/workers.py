"""Worker heartbeats: which workers are alive (recovery.py acts on the ones that are not)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from spane_cli.store.models import WorkerHeartbeat

# Production's; a worker takes its own from WorkerTimings (engine/worker_settings.py).
HEARTBEAT_EVERY_SECONDS = 1.5
HEARTBEAT_TTL_SECONDS = 6.0


def beat(name: str, host: str, pid: int, queues: Sequence[str], now: float | None = None) -> None:
    now = time.time() if now is None else now
    updated = (
        WorkerHeartbeat.update(last_seen=now, pid=pid, host=host, queues=list(queues))
        .where(WorkerHeartbeat.name == name)
        .execute()
    )
    if not updated:
        WorkerHeartbeat.insert(
            name=name, host=host, pid=pid, queues=list(queues), started_at=now, last_seen=now
        ).on_conflict_ignore().execute()


def forget(name: str) -> None:
    WorkerHeartbeat.delete().where(WorkerHeartbeat.name == name).execute()


def forget_silent(before: float) -> int:
    """Remove the heartbeats of workers silent since before `before` (their process lives
    ended: each life has an identity of its own, so nothing would ever update them again).
    Returns how many went."""
    return int(WorkerHeartbeat.delete().where(WorkerHeartbeat.last_seen < before).execute())


def live_workers(
    now: float | None = None, ttl: float = HEARTBEAT_TTL_SECONDS
) -> list[WorkerHeartbeat]:
    """Workers whose heartbeat is younger than `ttl` seconds."""
    now = time.time() if now is None else now
    return list(
        WorkerHeartbeat.select()
        .where(WorkerHeartbeat.last_seen >= now - ttl)
        .order_by(WorkerHeartbeat.name)
    )


def worker_spans(slack: float, since: float) -> list[tuple[float, float]]:
    """(started, last seen + `slack`) of the workers seen alive at `since` or later: when a
    worker was running, as far as the heartbeat rows tell. `slack` covers the wait until a
    live worker's next beat."""
    rows = WorkerHeartbeat.select(WorkerHeartbeat.started_at, WorkerHeartbeat.last_seen).where(
        WorkerHeartbeat.last_seen >= since - slack
    )
    return [(float(r.started_at), float(r.last_seen) + slack) for r in rows]
