"""`Client`: spane over its HTTP API (`spane serve`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

from spane_cli.client.common import TERMINAL, Started, document_of
from spane_cli.client.errors import ServiceUnavailable, WaitTimeout, from_problem

# Reconnects of `events` in a row without a new event before it gives up.
EVENT_RECONNECTS = 5


class Client:
    """A spane server's API. `token` is a bearer token of `spane token create` (scope read to
    look, run to start and cancel). Errors are `spane.errors` exceptions, one per problem
    kind. Use it as a context manager, or call `close()`.

    >>> with spane.Client("http://127.0.0.1:8080", token) as client:
    ...     run = client.run("etl", {"multiplier": 3})
    ...     print(client.wait(run.id, timeout=600)["status"])
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    @staticmethod
    def local(database_url: str | None = None, redis_url: str | None = None) -> Any:
        """The same API in this process, on the database and Redis directly (LocalClient)."""
        from spane_cli.client.local import LocalClient

        return LocalClient(database_url=database_url, redis_url=redis_url)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- requests --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"spane server unreachable: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    # -- runs ------------------------------------------------------------------------------

    def run(
        self,
        workflow: str,
        inputs: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Started:
        """Start a run of a registered workflow (its newest version unless `version`). The
        same `idempotency_key` returns the first run's id with `created` False."""
        body: dict[str, Any] = {"workflow": workflow, "input": inputs or {}}
        if version is not None:
            body["version"] = version
        return self._start(body, idempotency_key)

    def run_file(
        self,
        path_or_yaml: str | os.PathLike[str],
        inputs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Started:
        """Upload a workflow (a file's path, or its YAML text), validated as `spane validate`
        does (InvalidWorkflow holds the problems), register it and start a run."""
        text, filename = document_of(path_or_yaml)
        body: dict[str, Any] = {"document": text, "input": inputs or {}}
        if filename:
            body["filename"] = filename
        return self._start(body, idempotency_key)

    def _start(self, body: dict[str, Any], idempotency_key: str | None) -> Started:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self._request("POST", "/v1/executions", json=body, headers=headers)
        return Started(str(answer["id"]), bool(answer["created"]))

    # -- executions ------------------------------------------------------------------------

    def get(self, execution_id: str) -> dict[str, Any]:
        """The execution as `spane get -o json` prints it (SPEC §2), nodes included."""
        return dict(self._request("GET", f"/v1/executions/{execution_id}"))

    def wait(
        self, execution_id: str, timeout: float | None = None, *, interval: float = 0.5
    ) -> dict[str, Any]:
        """The execution once it has ended; WaitTimeout after `timeout` seconds (None: no
        limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(0.05, interval)
        while True:
            execution = self.get(execution_id)
            if execution["status"] in TERMINAL:
                return execution
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"execution {execution_id} still {execution['status']} after {timeout}s",
                    execution,
                )
            time.sleep(pause)
            pause = min(pause * 1.5, interval)

    def cancel(self, execution_id: str) -> dict[str, Any]:
        """Cancel it: {id, status}. Conflict when it has ended already."""
        return dict(self._request("POST", f"/v1/executions/{execution_id}/cancel"))

    def events(self, execution_id: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
        """Its events (SPEC §2 shape) in order, until it has ended. A dropped connection is
        opened again with Last-Event-ID, so no event is lost or repeated."""
        return self._follow(f"/v1/executions/{execution_id}/events", after)

    def logs(
        self, execution_id: str, *, node: str | None = None, after: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Its captured output ({execution_id, node_id, attempt, item, time, text}) until
        it has ended, resumed like `events`."""
        params = {"node": node} if node else {}
        return self._follow(f"/v1/executions/{execution_id}/logs", after, params)

    def _follow(
        self, path: str, after: int, params: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        last = after
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
            try:
                with self._http.stream(
                    "GET", path, headers=headers, params=params, timeout=httpx.Timeout(None)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _error(response)
                    for kind, data, event_id in _messages(response):
                        if kind == "end":
                            return
                        failures = 0
                        if event_id is not None:
                            last = int(event_id)
                        yield json.loads(data)
                broke_off = "the server closed the stream before its end"
            except httpx.TransportError as exc:
                broke_off = str(exc)
            failures += 1
            if failures > EVENT_RECONNECTS:
                raise ServiceUnavailable(f"the stream broke off: {broke_off}")
            time.sleep(min(0.1 * 2**failures, 5.0))


def _error(response: httpx.Response) -> Exception:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    return from_problem(response.status_code, problem if isinstance(problem, dict) else {})


def _messages(response: httpx.Response) -> Iterator[tuple[str, str, str | None]]:
    """(event, data, id) of each Server-Sent Event; comments (keep-alive pings) skipped."""
    event, data, event_id = "message", list[str](), None
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", list[str](), None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
