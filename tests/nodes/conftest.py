"""Helpers for node executor tests: contexts built by hand, and a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

import pytest

from spane_cli.nodes.base import NodeContext


def _frozen(value: Any) -> Any:
    """Configs reach executors read-only, as the loader hands them over."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def make_context(
    config: dict[str, Any],
    *,
    input: Any = None,
    secrets: dict[str, str] | None = None,
    timeout: float | None = None,
    cancel_requested: Callable[[], bool] | None = None,
    nodes: dict[str, Any] | None = None,
) -> NodeContext:
    secrets = secrets or {}
    scope = {
        "input": input,
        "parents": input,
        "nodes": nodes or {},
        "execution": {"id": "e1"},
        "workflow": {"name": "w"},
        "secrets": secrets,
    }
    return NodeContext(
        execution_id="e1",
        workflow_name="w",
        node_id="n1",
        attempt=1,
        config=_frozen(config),
        input=input,
        scope=scope,
        timeout=timeout,
        secrets=secrets,
        cancel_requested=cancel_requested,
    )


class _Handler(BaseHTTPRequestHandler):
    """Routes: /json (a JSON body), /status/<code>, /text (plain text), /slow (answers only
    when the test ends), /redirect?to=URL (a 302), anything else: the request echoed back as
    JSON."""

    release_slow: threading.Event

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/json"):
            self._reply(200, json.dumps({"items": [1, 2], "ok": True}).encode(), "application/json")
        elif self.path.startswith("/status/"):
            status = int(self.path.split("?")[0].rsplit("/", 1)[1])
            self._reply(status, b"server says no", "text/plain")
        elif self.path.startswith("/slow"):
            self.release_slow.wait(10)
            self._reply(200, b"late", "text/plain")
        elif self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", unquote(self.path.split("=", 1)[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/text"):
            self._reply(200, b"hello text", "text/plain; charset=utf-8")
        else:
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self._reply(200, json.dumps(echo).encode(), "application/json; charset=utf-8")

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture
def http_server() -> Iterator[str]:
    release_slow = threading.Event()
    handler = type("Handler", (_Handler,), {"release_slow": release_slow})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release_slow.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def context_for() -> Callable[..., NodeContext]:
    """`context_for(config, input=..., secrets=..., timeout=..., cancel_requested=...)`."""
    return make_context
