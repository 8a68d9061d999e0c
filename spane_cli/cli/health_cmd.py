"""`spane health`: is this installation able to run work? The answer is the exit code."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer


def health(ctx: typer.Context) -> None:
    """Redis ping, database and schema version, live workers, queue depths, late schedules,
    open circuit breakers (reported; an upstream host that fails leaves spane healthy). Exit 0
    healthy, 1 degraded (no live worker, pending migrations, a schedule whose fire is
    over a minute late), 3 Redis or database unreachable."""
    from spane_cli.cli.render import print_data
    from spane_cli.cli.services import settings
    from spane_cli.engine.connections import database_url, open_redis, open_store
    from spane_cli.engine.dispatch import split_band
    from spane_cli.errors import ExitCode, ServiceUnreachable
    from spane_cli.store.db import describe
    from spane_cli.store.migrations import migration_status

    current = settings(ctx)
    report: dict[str, Any] = {"status": "healthy", "problems": []}
    unreachable = False
    try:
        connection = open_redis(current.redis_url)
        started = time.perf_counter()
        connection.ping()
        report["redis"] = {
            "url": describe(current.redis_url),
            "ok": True,
            "ping_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    except ServiceUnreachable as exc:
        connection = None
        unreachable = True
        report["redis"] = {"url": describe(current.redis_url), "ok": False, "error": exc.message}
        report["problems"].append(exc.message)
    try:
        store = open_store(current, migrate_if_needed=False)
        status = migration_status(store.database)
        report["database"] = {
            "url": describe(database_url(current)),
            "ok": True,
            "schema_version": status.current,
            "latest_schema_version": status.latest,
        }
        if not status.up_to_date:
            report["problems"].append("database schema is behind: run `spane db migrate`")
    except ServiceUnreachable as exc:
        store = None
        unreachable = True
        report["database"] = {
            "url": describe(database_url(current)),
            "ok": False,
            "error": exc.message,
        }
        report["problems"].append(exc.message)
    if store is not None and report["database"]["schema_version"] > 0:
        from spane_cli.engine.worker_settings import WorkerTimings
        from spane_cli.store.workers import live_workers
        from spane_cli.timeutil import iso

        # The TTL the workers are told to use (SPANE_HEARTBEAT_TTL), not the default one.
        workers = live_workers(ttl=WorkerTimings.from_environment().heartbeat_ttl)
        report["workers"] = [
            {
                "name": w.name,
                "host": w.host,
                "pid": w.pid,
                "queues": w.queues,
                "last_seen": iso(w.last_seen),
            }
            for w in workers
        ]
        if not workers:
            report["problems"].append("no live worker: start `spane worker`")
        from spane_cli.store.schedule_views import late_schedules

        # A database still behind migration 3 has no schedules to be late.
        has_schedules = store.database.table_exists("schedule")
        report["late_schedules"] = late_schedules(time.time()) if has_schedules else []
        for late in report["late_schedules"]:
            report["problems"].append(
                f"schedule {late['name']} is late: its fire of {late['due']} has not happened "
                f"after {late['late_seconds']:g}s (no worker is firing schedules)"
            )
        # A database still behind migration 8 has no breakers.
        has_breakers = store.database.table_exists("circuit_breaker")
        report["open_breakers"] = (
            [view.as_json() for view in store.list_breakers(only_open=True)] if has_breakers else []
        )
        if connection is not None:
            served = {q for w in workers for q in w.queues}
            waiting = {
                key.decode().removeprefix("rq:queue:")
                for key in connection.scan_iter(match="rq:queue:*", count=1000)
            }
            queues = sorted(served | waiting | {"default"})
            report["queues"] = {q: int(connection.llen(f"rq:queue:{q}")) for q in queues}
            for queue in queues:
                depth = report["queues"][queue]
                if depth and split_band(queue)[0] not in served:
                    report["problems"].append(
                        f"queue {queue} has {depth} waiting jobs and no live worker serves it"
                    )
    if unreachable:
        report["status"] = "unreachable"
    elif report["problems"]:
        report["status"] = "degraded"
    if not print_data(report, current.output):
        sys.stdout.write(f"status: {report['status']}\n")
        for key in ("redis", "database"):
            part = report.get(key, {})
            sys.stdout.write(f"{key}: {'ok' if part.get('ok') else 'DOWN'} {part.get('url', '')}\n")
        for worker in report.get("workers", []):
            sys.stdout.write(f"worker: {worker['name']} queues={','.join(worker['queues'])}\n")
        for queue, depth in report.get("queues", {}).items():
            sys.stdout.write(f"queue: {queue} depth={depth}\n")
        for late in report.get("late_schedules", []):
            sys.stdout.write(f"late schedule: {late['name']} due {late['due']}\n")
        for breaker in report.get("open_breakers", []):
            state = (
                "half open, its probe running"
                if breaker["state"] == "half_open"
                else f"open until {breaker['open_until']}"
            )
            sys.stdout.write(f"open breaker: host {breaker['host']} {state}\n")
        for problem in report["problems"]:
            sys.stderr.write(f"spane: {problem}\n")
    if unreachable:
        raise typer.Exit(int(ExitCode.UNREACHABLE))
    if report["problems"]:
        raise typer.Exit(int(ExitCode.FAILED))
