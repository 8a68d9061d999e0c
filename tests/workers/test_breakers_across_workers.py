"""Circuit breakers of http nodes across real `spane worker` processes, against a local HTTP
server that fails, then recovers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cluster_support import Cluster, poll


class Upstream:
    """A server on 127.0.0.1 that answers 500 until told to recover; it counts requests."""

    def __init__(self) -> None:
        self.healthy = False
        self.requests = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                upstream.requests += 1
                status = 200 if upstream.healthy else 500
                body = b'{"ok": true}' if upstream.healthy else b"down"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.server.shutdown()
    server.server.server_close()


def calling_flow(name: str, host: str, on_open: str, open_for: str = "2s") -> str:
    return (
        f"version: 1\nname: {name}\n"
        f'circuit_breakers:\n  "{host}": {{failures: 3, window: 1m, open_for: {open_for},'
        f" on_open: {on_open}}}\n"
        f"nodes:\n  call:\n    type: http\n    config: {{url: 'http://{host}/ping'}}\n"
    )


def ended(cluster: Cluster, execution: str) -> str:
    status = cluster.status(execution)
    return status if status in ("succeeded", "failed", "cancelled") else ""


def breaker(cluster: Cluster, host: str) -> dict[str, object]:
    result = cluster.spane("breaker", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    return next((b for b in json.loads(result.stdout) if b["host"] == host), {})


def test_a_breaker_opens_fails_fast_and_a_probe_closes_it_after_recovery(
    cluster: Cluster, upstream: Upstream
) -> None:
    for _ in range(2):
        cluster.start_worker("--concurrency", "2")
    # Open long enough that the checks below (a few CLI calls on a busy machine) all fall
    # inside it: a half-open probe would call the host.
    workflow = calling_flow("caller", upstream.host, "fail", open_for="8s")
    failing = []
    for _ in range(3):  # one at a time: each failure is counted before the next call
        failing.append(cluster.submit(workflow))
        poll(lambda: ended(cluster, failing[-1]), 30, "a failing call to end")
    assert upstream.requests == 3
    opened = [e for e in cluster.events(failing[-1]) if e["type"] == "breaker.opened"]
    assert opened and opened[0]["data"]["host"] == upstream.host
    shown = breaker(cluster, upstream.host)
    assert shown["state"] == "open"
    open_until = datetime.fromisoformat(str(shown["open_until"]).replace("Z", "+00:00"))
    health = json.loads(cluster.spane("health", "-o", "json").stdout)
    assert [b["host"] for b in health["open_breakers"]] == [upstream.host]
    # While open, calls fail at once and the host sees nothing.
    refused = cluster.submit(workflow)
    assert poll(lambda: ended(cluster, refused), 30, "the refused call") == "failed"
    error = cluster.get(refused)["nodes"]["call"]["error"]
    assert error.startswith(f"circuit open for host {upstream.host} until 20")
    assert upstream.requests == 3
    upstream.healthy = True
    poll(lambda: time.time() > open_until.timestamp() + 0.2, 15, "the open time to pass")
    probe = cluster.submit(workflow)
    assert poll(lambda: ended(cluster, probe), 30, "the probe") == "succeeded"
    assert any(e["type"] == "breaker.closed" for e in cluster.events(probe))
    assert breaker(cluster, upstream.host)["state"] == "closed"
    later = [cluster.submit(workflow) for _ in range(3)]
    for execution in later:
        assert poll(lambda e=execution: ended(cluster, e), 30, "a later call") == "succeeded"
    assert upstream.requests == 3 + 1 + 3
    assert json.loads(cluster.spane("health", "-o", "json").stdout)["open_breakers"] == []


def test_with_on_open_wait_nodes_wait_without_a_worker_until_the_probe_closes_it(
    cluster: Cluster, upstream: Upstream
) -> None:
    cluster.start_worker("--concurrency", "2")
    workflow = calling_flow("patient", upstream.host, "wait", open_for="3s")
    for _ in range(3):
        execution = cluster.submit(workflow)
        poll(lambda e=execution: ended(cluster, e), 30, "a failing call to end")
    waiting = [cluster.submit(workflow) for _ in range(3)]
    expected = f"circuit breaker open for host {upstream.host} until 20"
    poll(
        lambda: expected in cluster.spane("get", waiting[0]).stdout,
        what="the wait shown by get",
    )
    assert cluster.node_status(waiting[0], "call") == "queued"
    assert upstream.requests == 3
    upstream.healthy = True
    for execution in waiting:
        assert poll(lambda e=execution: ended(cluster, e), 30, "a waiting call") == "succeeded"
    # One probe closed it; the others ran after it.
    assert upstream.requests == 3 + 3
    assert breaker(cluster, upstream.host)["state"] == "closed"
    assert cluster.spane("breaker", "reset", upstream.host).returncode == 0
    assert breaker(cluster, upstream.host) == {}
