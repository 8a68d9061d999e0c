"""`spane worker`: run node jobs from RQ queues until stopped (or drained with --burst)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from spane_cli.cli.log_format import TEXT_FORMAT, JsonLogFormatter, LogFormat

if TYPE_CHECKING:
    from redis import Redis

    from spane_cli.engine.worker_settings import WorkerTimings
    from spane_cli.store.store import Store

HELP = (
    "Run node jobs from the given queues. --burst exits when there is nothing left to do. "
    "SIGTERM lets the running node finish, for up to SPANE_STOP_GRACE seconds (default 60), "
    "and exits 0; past the grace, or on a second SIGTERM or a SIGINT, the node's commands are "
    "killed, it runs again on another worker, and the worker exits 1. If the worker itself is "
    "killed (kill -9), a small keeper process it started kills its commands; a worker stuck "
    "where its heartbeat cannot beat is killed by it too. Every worker "
    "also reconciles: it re-sends what the database says is due (lost jobs, retries, delays). "
    "Within a queue, higher node priority is taken first; each unit counts as "
    "SPANE_PRIORITY_AGING of waiting (default 1m, see docs/priorities.md). "
    "--metrics-port P serves Prometheus metrics of all its processes on http://HOST:P/metrics "
    "(see docs/metrics.md). With the otel extra installed and OTEL_EXPORTER_OTLP_ENDPOINT set, "
    "each node attempt is sent as a span of its execution's trace."
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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus metrics on this port (all interfaces).",
            metavar="P",
            min=1,
            max=65535,
        ),
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
    from spane_cli.engine.worker_settings import (
        WorkerTimings,
        priority_aging_from_environment,
        retention_from_environment,
    )

    settings = settings_of(ctx)
    add_import_paths(paths or [])
    # Read before a supervisor starts children: a bad value is one usage error, not children
    # failing and being replaced forever.
    timings = WorkerTimings.from_environment()
    retention_from_environment()
    priority_aging_from_environment()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if log_format == LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO, handlers=[handler])
    logging.getLogger("rq").setLevel(logging.WARNING)
    connection = open_redis(settings.redis_url)
    store = open_store(settings)
    served = tuple(queues or ("default",))
    with contextlib.ExitStack() as observing:
        if metrics_port is not None:
            _start_metrics(observing, metrics_port, connection, served)
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

            ended = _metrics_child_ended if metrics_port is not None else (lambda pid: None)
            raise typer.Exit(supervise(concurrency, sys.argv, name, release, ended))
        _run_one(store, connection, served, name, burst, max_jobs, timings)


def _run_one(
    store: Store,
    connection: Redis,
    queues: tuple[str, ...],
    name: str | None,
    burst: bool,
    max_jobs: int | None,
    timings: WorkerTimings,
) -> None:
    from spane_cli import keeper
    from spane_cli.engine import tracing
    from spane_cli.engine.worker import NodeWorker, WorkerOptions
    from spane_cli.engine.worker_settings import pulse_window
    from spane_cli.errors import ExitCode

    options = WorkerOptions(
        queues=queues,
        name=name or f"{socket.gethostname()}.{os.getpid()}",
        burst=burst,
        max_jobs=max_jobs,
        handle_signals=True,
        timings=timings,
    )
    tracing.start_from_environment()
    # Ends this worker's commands if it dies without ending them itself, and the worker if it
    # hangs where its heartbeat cannot beat.
    keeper.start().watch_pulse(timings.heartbeat_every, pulse_window(timings))
    worker = NodeWorker(store, connection, options)
    try:
        worker.run()
    finally:
        keeper.stop()
        tracing.stop()
    if worker.forced:
        raise typer.Exit(ExitCode.FAILED)


def _start_metrics(
    stack: contextlib.ExitStack, port: int, connection: Redis, queues: tuple[str, ...]
) -> None:
    """A supervisor's child records into its supervisor's directory; any other worker makes
    its own, records, and serves the port."""
    from spane_cli.engine import metrics
    from spane_cli.engine.supervisor import SUPERVISOR_ENV

    if os.environ.get(SUPERVISOR_ENV) and os.environ.get(metrics.MULTIPROC_DIR_ENV):
        metrics.start_recording()
        return
    stack.enter_context(metrics.private_directory())
    metrics.start_recording()
    metrics.serve(port, connection, queues)


def _metrics_child_ended(pid: int) -> None:
    from spane_cli.engine import metrics

    metrics.child_ended(pid)
