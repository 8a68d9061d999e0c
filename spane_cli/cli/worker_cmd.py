"""`spane worker`: run node jobs from RQ queues until stopped (or drained with --burst)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Annotated

import typer

from spane_cli.cli.log_format import TEXT_FORMAT, JsonLogFormatter, LogFormat

HELP = (
    "Run node jobs from the given queues. --burst exits when there is nothing left to do. "
    "SIGTERM lets the running node finish, for up to SPANE_STOP_GRACE seconds (default 60), "
    "and exits 0; past the grace, or on a second SIGTERM or a SIGINT, the node's commands are "
    "killed, it runs again on another worker, and the worker exits 1. If the worker itself is "
    "killed (kill -9), a small keeper process it started kills its commands. Every worker "
    "also reconciles: it re-sends what the database says is due (lost jobs, retries, delays)."
)


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Worker processes.", min=1)
    ] = 1,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", "-Q", help="Queue to serve (repeatable).", metavar="Q"),
    ] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit when no work is left.")] = False,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", help="Exit after this many jobs.", min=1)
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Worker name (default host.pid).")
    ] = None,
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", help="text, or json: one object a line for log shippers."),
    ] = LogFormat.TEXT,
    paths: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            "-P",
            help="A directory python nodes import from, first on the import path "
            "(repeatable; also on PYTHONPATH for the processes the worker starts).",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.engine.connections import open_redis, open_store
    from spane_cli.engine.import_path import add_import_paths
    from spane_cli.engine.worker import NodeWorker, WorkerOptions
    from spane_cli.engine.worker_settings import (
        WorkerTimings,
        pulse_window,
        retention_from_environment,
    )
    from spane_cli.errors import ExitCode

    settings = settings_of(ctx)
    add_import_paths(paths or [])
    # Read before a supervisor starts children: a bad value is one usage error, not children
    # failing and being replaced forever.
    timings = WorkerTimings.from_environment()
    retention_from_environment()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if log_format == LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO, handlers=[handler])
    logging.getLogger("rq").setLevel(logging.WARNING)
    connection = open_redis(settings.redis_url)
    store = open_store(settings)
    if concurrency > 1:
        from spane_cli.engine.dispatch import Dispatcher
        from spane_cli.engine.supervisor import supervise

        dispatcher = Dispatcher(connection)

        def release(identity: str) -> None:
            released = store.release_worker(identity)
            dispatcher.enqueue(released)
            if released:
                logging.getLogger("spane.supervisor").warning(
                    "released %d nodes of %s to run again", len(released), identity
                )

        raise typer.Exit(supervise(concurrency, sys.argv, name, release))
    options = WorkerOptions(
        queues=tuple(queues or ("default",)),
        name=name or f"{socket.gethostname()}.{os.getpid()}",
        burst=burst,
        max_jobs=max_jobs,
        handle_signals=True,
        timings=timings,
    )
    from spane_cli import keeper

    # Ends this worker's commands if it dies without ending them itself, and the worker if it
    # hangs where its heartbeat cannot beat.
    keeper.start().watch_pulse(timings.heartbeat_every, pulse_window(timings))
    worker = NodeWorker(store, connection, options)
    try:
        worker.run()
    finally:
        keeper.stop()
    if worker.forced:
        raise typer.Exit(ExitCode.FAILED)
