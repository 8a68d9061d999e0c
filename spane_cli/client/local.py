"""`LocalClient`: the same API as `Client`, in this process, on the database and Redis
directly (for programs that hold the database URL; no server needed). Runs are created by
the engine exactly as `spane run` creates them, and workers run them as usual."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from spane_cli import errors as spane_errors
from spane_cli.client import errors
from spane_cli.client.common import Started, document_of
from spane_cli.config import DEFAULT_REDIS_URL, Settings

T = TypeVar("T")


def _translated(call: Callable[[], T]) -> T:
    """spane's own errors as the client's, so code written for `Client` catches them."""
    try:
        return call()
    except spane_errors.WorkflowInvalid as exc:
        problems = [
            {
                "file": p.file,
                "line": p.line,
                "column": p.column,
                "path": p.path or None,
                "message": p.message,
                "text": p.render(),
            }
            for p in exc.problems
        ]
        raise errors.InvalidWorkflow(exc.message, {"problems": problems}) from None
    except spane_errors.UsageError as exc:
        raise errors.InvalidRequest(exc.message) from None
    except spane_errors.NotFound as exc:
        raise errors.NotFound(exc.message) from None
    except spane_errors.ServiceUnreachable as exc:
        raise errors.ServiceUnavailable(exc.message) from None
    except spane_errors.SpaneError as exc:
        raise errors.Conflict(exc.message) from None


class LocalClient:
    """`Client`'s methods without HTTP. `database_url` and `redis_url` default to what the
    command line uses (SPANE_DATABASE_URL, SPANE_REDIS_URL, else the embedded database and
    redis://localhost:6379/0). The database is this process's (peewee binds its tables to
    one database per process)."""

    def __init__(self, database_url: str | None = None, redis_url: str | None = None) -> None:
        self.settings = Settings(
            db_url=database_url
            or os.environ.get("SPANE_DATABASE_URL")
            or os.environ.get("DATABASE_URL"),
            redis_url=redis_url
            or os.environ.get("SPANE_REDIS_URL")
            or os.environ.get("REDIS_URL")
            or DEFAULT_REDIS_URL,
        )
        from spane_cli.engine.connections import open_store

        self._store = _translated(lambda: open_store(self.settings))
        self._dispatcher: Any = None

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    def _bind(self) -> Any:
        """The store, with the tables bound to its database again (another store opened in
        this process since may have taken them)."""
        self._store.bind()
        return self._store

    def _dispatch(self) -> Any:
        if self._dispatcher is None:
            from spane_cli.engine.connections import open_redis
            from spane_cli.engine.dispatch import Dispatcher

            self._dispatcher = Dispatcher(open_redis(self.settings.redis_url))
        return self._dispatcher

    # -- runs ------------------------------------------------------------------------------

    def run(
        self,
        workflow: str,
        inputs: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Started:
        """As `Client.run`."""
        from spane_cli.engine.submit import submit_registered

        def start() -> Started:
            store = self._bind()
            dispatcher = self._dispatch()  # Redis first: nothing written when it is down
            execution_id, created, dispatches = submit_registered(
                store, workflow, version, inputs or {}, idempotency_key=idempotency_key
            )
            dispatcher.enqueue(dispatches)
            return Started(execution_id, created)

        return _translated(start)

    def run_file(
        self,
        path_or_yaml: str | os.PathLike[str],
        inputs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Started:
        """As `Client.run_file`. A path keeps its sub-workflow references relative to it."""
        from spane_cli.engine.submit import submit_validated, validated_file, validated_text

        def start() -> Started:
            store = self._bind()
            dispatcher = self._dispatch()
            text, filename = document_of(path_or_yaml)
            if filename is not None:
                validated = validated_file(os.fspath(path_or_yaml))
            else:
                validated = validated_text(text, None)
            execution_id, created, dispatches = submit_validated(
                store, validated, inputs or {}, idempotency_key=idempotency_key
            )
            dispatcher.enqueue(dispatches)
            return Started(execution_id, created)

        return _translated(start)

    # -- executions ------------------------------------------------------------------------

    def get(self, execution_id: str) -> dict[str, Any]:
        """As `Client.get`: the SPEC §2 shape."""
        import json

        from spane_cli.store import queries
        from spane_cli.store.views import execution_view

        def read() -> dict[str, Any]:
            self._bind()
            full_id = queries.resolve_execution_id(execution_id)
            view = execution_view(queries.require_execution(full_id))
            return dict(json.loads(json.dumps(view, default=str)))

        return _translated(read)

    def wait(
        self, execution_id: str, timeout: float | None = None, *, interval: float = 0.5
    ) -> dict[str, Any]:
        """As `Client.wait`."""
        from spane_cli.engine.waiting import Pace, wait_for_end

        current = self.get(execution_id)
        self._bind()
        ended = wait_for_end([current["id"]], within=timeout, pace=Pace(0.05, interval))
        execution = self.get(current["id"])
        if not ended:
            raise errors.WaitTimeout(
                f"execution {current['id']} still {execution['status']} after {timeout}s",
                execution,
            )
        return execution

    def cancel(self, execution_id: str) -> dict[str, Any]:
        """As `Client.cancel`: {id, status}; Conflict when it has ended already."""

        def cancel() -> dict[str, Any]:
            from spane_cli.store import queries

            store = self._bind()
            full_id = queries.resolve_execution_id(execution_id)
            if not store.cancel(full_id):
                status = queries.execution_status(full_id)
                raise spane_errors.OperationFailed(f"execution {full_id} is already {status}")
            return {"id": full_id, "status": queries.execution_status(full_id)}

        return _translated(cancel)

    def events(self, execution_id: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
        """As `Client.events`: its events in order, until it has ended."""
        from spane_cli.store import queries
        from spane_cli.store.views import event_view

        return self._follow(execution_id, after, queries.events_after, event_view)

    def logs(
        self, execution_id: str, *, node: str | None = None, after: int = 0
    ) -> Iterator[dict[str, Any]]:
        """As `Client.logs`."""
        from spane_cli.store import queries
        from spane_cli.timeutil import iso

        def fetch(full_id: str, cursor: int) -> list[Any]:
            return queries.logs_after(full_id, cursor, node)

        def record(row: Any) -> dict[str, Any]:
            return {
                "execution_id": row.execution_id,
                "node_id": row.node_id,
                "attempt": row.attempt,
                "item": row.item,
                "time": iso(row.created_at),
                "text": row.text,
            }

        return self._follow(execution_id, after, fetch, record)

    def _follow(
        self,
        execution_id: str,
        after: int,
        fetch: Callable[[str, int], list[Any]],
        render: Callable[[Any], dict[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        import json

        from spane_cli.engine.waiting import follow_rows

        full_id = self.get(execution_id)["id"]

        def rows(cursor: int) -> list[Any]:
            self._bind()
            return fetch(full_id, max(cursor, after))

        for row in follow_rows(full_id, rows, follow=True):
            if row.id > after:
                yield json.loads(json.dumps(render(row), default=str))
