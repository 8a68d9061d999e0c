"""Prometheus metrics of `spane worker --metrics-port P` (each one is described in
docs/metrics.md).

prometheus-client runs in multiprocess mode: every process of a worker (the supervisor and
its children) writes its samples to files in one private directory, made here and removed
when the worker stops, and the process that serves the port adds them up at each scrape.
Nothing is imported or recorded without --metrics-port: `active()` is then None, and the hot
path pays one look at it. Node outcomes, retries, dead letters and lost nodes are counted from
the events each committed transaction wrote (store/tx.py EVENT_OBSERVERS), so they count what
the database recorded, once, whichever process recorded it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import cachetools

from spane_cli.errors import UsageError
from spane_cli.store import events
from spane_cli.store.records import EventRow
from spane_cli.store.tx import EVENT_OBSERVERS, Caches
from spane_cli.text import error_line

if TYPE_CHECKING:
    from redis import Redis

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("spane.worker")
# Run times of nodes: from instant no-ops to hour-long jobs.
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 300, 900, 3600)
# Queued -> started: milliseconds when workers keep up, minutes behind a backlog.
LATENCY_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300)
_FINISHED_STATUS = {
    events.NODE_SUCCEEDED: "succeeded",
    events.NODE_FAILED: "failed",
    events.NODE_SKIPPED: "skipped",
    events.NODE_UPSTREAM_FAILED: "upstream_failed",
    events.NODE_CANCELLED: "cancelled",
}


class WorkerMetrics:
    """The metric objects of one process; see docs/metrics.md."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ["workflow", "type", "status"]
        self.nodes_finished = Counter(
            "spane_nodes_finished", "Nodes that reached a final status.", labels
        )
        self.node_duration = Histogram(
            "spane_node_duration_seconds",
            "Time a worker spent running one node attempt (or foreach item).",
            ["workflow", "type", "outcome"],
            buckets=DURATION_BUCKETS,
        )
        self.dispatch_latency = Histogram(
            "spane_dispatch_latency_seconds",
            "From a node (or item) being queued to a worker starting it.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
        )
        self.reconciler_actions = Counter(
            "spane_reconciler_actions", "What the reconciler did, by action.", ["action"]
        )
        self.lost_workers = Counter(
            "spane_lost_workers", "Workers whose running nodes were taken back from them."
        )
        self.lost_nodes = Counter(
            "spane_nodes_lost", "Node runs taken back from a lost worker.", ["workflow"]
        )
        self.retries = Counter(
            "spane_node_retries", "Failed attempts that will be tried again.", ["workflow", "type"]
        )
        self.dead_letters = Counter(
            "spane_dead_letters", "Nodes that failed for good (dead letters).", ["workflow"]
        )
        self.breaker_changes = Counter(
            "spane_circuit_breaker_changes",
            "Circuit breakers that opened or closed, by host and new state.",
            ["host", "state"],
        )
        self.deferred_starts = Counter(
            "spane_deferred_starts",
            "Starts put off by a rate limit or an open breaker, by what they wait for.",
            ["reason"],
        )
        # Lost worker lives already counted: their nodes and items come back in several
        # transactions, and a worker is lost once.
        self._lost_seen: cachetools.LRUCache[str, bool] = cachetools.LRUCache(4096)

    def observe_events(self, caches: Caches, written: list[EventRow]) -> None:
        for execution_id, node_id, event_type, data in written:
            if node_id is None:
                continue
            status = _FINISHED_STATUS.get(event_type)
            if status is not None:
                workflow, type_name = _node_labels(caches, execution_id, node_id)
                self.nodes_finished.labels(workflow, type_name, status).inc()
            elif event_type == events.NODE_RETRYING:
                self.retries.labels(*_node_labels(caches, execution_id, node_id)).inc()
            elif event_type == events.DEAD_LETTER_ADDED:
                self.dead_letters.labels(_node_labels(caches, execution_id, node_id)[0]).inc()
            elif event_type in (events.BREAKER_OPENED, events.BREAKER_CLOSED):
                state = "open" if event_type == events.BREAKER_OPENED else "closed"
                self.breaker_changes.labels(str((data or {}).get("host", "")), state).inc()
            elif event_type == events.NODE_DEFERRED:
                self.deferred_starts.labels(str((data or {}).get("reason", ""))).inc()
            elif event_type == events.NODE_LOST:
                self.lost_nodes.labels(_node_labels(caches, execution_id, node_id)[0]).inc()
                worker = (data or {}).get("worker")
                if worker and worker not in self._lost_seen:
                    self._lost_seen[worker] = True
                    self.lost_workers.inc()

    def observe_run(self, workflow: str, type_name: str, outcome: str, seconds: float) -> None:
        self.node_duration.labels(workflow, type_name, outcome).observe(seconds)

    def observe_claim(self, queue: str, latency: float) -> None:
        self.dispatch_latency.labels(queue).observe(max(latency, 0.0))

    def count_reconciled(self, action: str, count: int) -> None:
        if count:
            self.reconciler_actions.labels(action).inc(count)


def _node_labels(caches: Caches, execution_id: str, node_id: str) -> tuple[str, str]:
    """(workflow name, node type), from the process's caches (a query the first time)."""
    info = caches.execution_info(execution_id)
    if info is None:
        return "", ""
    node = caches.versions.get(info.version_id).workflow.nodes.get(node_id)
    return info.workflow, node.type if node is not None else ""


_active: WorkerMetrics | None = None


def active() -> WorkerMetrics | None:
    """This process's metrics, or None when the worker serves none."""
    return _active


def _safe_observer(caches: Caches, written: list[EventRow]) -> None:
    if _active is None:
        return
    # A failing metric (a cache miss on a database that just went away) must not fail the
    # transaction that was already committed.
    with contextlib.suppress(Exception):
        _active.observe_events(caches, written)


def start_recording() -> WorkerMetrics:
    """Record in this process (the multiprocess directory must be set before the first
    import of prometheus_client, by `private_directory` in the serving process)."""
    global _active
    if _active is None:
        _active = WorkerMetrics()
        EVENT_OBSERVERS.append(_safe_observer)
    return _active


@contextlib.contextmanager
def private_directory() -> Iterator[str]:
    """A fresh multiprocess directory in the environment, for this process and the children
    it starts; removed at the end. Never one inherited from elsewhere: old samples of
    another run would be added to ours."""
    directory = tempfile.mkdtemp(prefix="spane-metrics-")
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def child_ended(pid: int) -> None:
    """A child process is gone: its live-gauge files are removed (its counter and histogram
    files stay, so that totals never go backwards)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)


class _QueueDepth:
    """Jobs waiting on each served queue, asked of Redis at each scrape."""

    def __init__(self, connection: Redis, queues: Sequence[str]) -> None:
        self.connection = connection
        self.queues = list(queues)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from spane_cli.engine.dispatch import Dispatcher

        family = GaugeMetricFamily(
            "spane_queue_depth", "Jobs waiting on a queue this worker serves.", labels=["queue"]
        )
        for name in self.queues:
            try:
                depth = Dispatcher(self.connection).depth(name)  # its priority bands too
            except Exception:  # Redis away: no sample rather than a failed scrape
                continue
            family.add_metric([name], depth)
        yield family


def serve(port: int, connection: Redis, queues: Sequence[str]) -> None:
    """Serve /metrics on `port` (all interfaces) from a thread of this process.

    prometheus-client's own WSGI app, on a server whose errors are one log line: a scraper
    that hangs up mid-answer would otherwise print a traceback into the worker's log."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            log.warning("metrics: a scrape failed: %s", error_line(sys.exc_info()[1] or OSError()))

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # no line per scrape
            pass

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_QueueDepth(connection, queues))
    try:
        server = make_server(
            "", port, make_wsgi_app(registry), server_class=Server, handler_class=QuietHandler
        )
    except OSError as exc:
        raise UsageError(f"--metrics-port {port}: cannot listen: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
