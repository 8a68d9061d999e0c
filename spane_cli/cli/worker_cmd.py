"""`spane worker`: run node jobs from RQ queues until stopped (or drained with --burst)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Annotated

import typer

HELP = (
    "Run node jobs from the given queues. --burst exits when there is nothing left to do. "
    "SIGTERM lets the running node finish, for up to SPANE_STOP_GRACE seconds (default 60), "
    "and exits 0; past the grace, or on a second SIGTERM or a SIGINT, the node's commands are "
    "killed and it runs again on another worker. Every worker also reconciles: it re-sends "
    "what the database says is due (lost jobs, retries, delays)."
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
    from spane_cli.engine.worker_settings import WorkerTimings

    settings = settings_of(ctx)
    add_import_paths(paths or [])
    # Read before a supervisor starts children: a bad value is one usage error, not children
    # failing and being replaced forever.
    timings = WorkerTimings.from_environment()
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("rq").setLevel(logging.WARNING)
    connection = open_redis(settings.redis_url)
    store = open_store(settings)
    if concurrency > 1:
        from spane_cli.engine.dispatch import Dispatcher
        from spane_cli.engine.supervisor import supervise

        dispatcher = Dispatcher(connection)

        def release(identity: str) -> None:
            dispatcher.enqueue(store.release_worker(identity))

        raise typer.Exit(supervise(concurrency, sys.argv, name, release))
    options = WorkerOptions(
        queues=tuple(queues or ("default",)),
        name=name or f"{socket.gethostname()}.{os.getpid()}",
        burst=burst,
        max_jobs=max_jobs,
        handle_signals=True,
        timings=timings,
    )
    NodeWorker(store, connection, options).run()
