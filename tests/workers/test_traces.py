"""Traces (the otel extra): one trace per execution, a span per node attempt, caught by the
SDK's in-memory exporter around a real worker on real Redis and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import ROOT, flow
from redis import Redis

from spane_cli.config import Settings
from spane_cli.engine import tracing
from spane_cli.engine.connections import open_store
from spane_cli.engine.dispatch import Dispatcher
from spane_cli.engine.submit import submit
from spane_cli.engine.worker import NodeWorker, WorkerOptions


@pytest.fixture
def exported() -> Iterator[Any]:
    pytest.importorskip(
        "opentelemetry.sdk", reason="the otel extra (opentelemetry-sdk) is not installed"
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.start(provider)
    try:
        yield exporter
    finally:
        tracing.stop()


def test_each_node_attempt_is_a_span_of_its_execution_s_trace(
    exported: Any, fresh_postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    from opentelemetry.trace import StatusCode

    path = tmp_path / "traced.yaml"
    path.write_text(
        flow(
            "traced",
            "  start: {type: noop}\n"
            "  flaky: {type: fail, needs: [start], config: {message: nope}, retry: {attempts: 2}}\n"
            "  each: {type: shell, needs: [start], foreach: [1, 2], config: {run: 'true'}}\n",
        )
    )
    store = open_store(Settings(db_url=fresh_postgres_url, redis_url=redis_url))
    connection = Redis.from_url(redis_url)
    try:
        execution_id, _, dispatches = submit(store, str(path), {})
        Dispatcher(connection).enqueue(dispatches)
        NodeWorker(store, connection, WorkerOptions(name="traced", burst=True)).run()
    finally:
        connection.close()
        store.close()

    spans = exported.get_finished_spans()
    assert {span.context.trace_id for span in spans} == {uuid.UUID(execution_id).int}
    # The execution's span is the root; every node attempt hangs under it.
    (root,) = [span for span in spans if span.parent is None]
    assert root.name == "execution traced"
    assert root.context.span_id == tracing.execution_span_id(execution_id)
    assert root.attributes["spane.status"] == "failed"
    assert root.status.status_code == StatusCode.ERROR
    spans = [span for span in spans if span is not root]
    assert {span.parent.span_id for span in spans} == {root.context.span_id}
    assert all(root.start_time <= span.start_time <= span.end_time <= root.end_time
               for span in spans)  # fmt: skip
    seen = sorted(
        (
            span.attributes["spane.node"],
            span.attributes.get("spane.item", -1),
            span.attributes["spane.attempt"],
            span.attributes["spane.status"],
        )
        for span in spans
    )
    assert seen == [
        ("each", -1, 1, "fanout"),  # the foreach node's own run: it starts the items
        ("each", 0, 1, "succeeded"),
        ("each", 1, 1, "succeeded"),
        ("flaky", -1, 1, "failed"),
        ("flaky", -1, 2, "failed"),
        ("start", -1, 1, "succeeded"),
    ]
    assert {span.attributes["spane.workflow"] for span in spans} == {"traced"}
    failed = [span for span in spans if span.attributes["spane.node"] == "flaky"]
    assert all(span.status.status_code == StatusCode.ERROR for span in failed)
    assert failed[0].status.description == "nope"


def test_the_standard_variables_turn_tracing_on(exported: Any) -> None:
    tracing.stop()
    assert tracing.start_from_environment({}) is None and tracing.active() is None
    environment = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_SERVICE_NAME": "spane-test",
    }
    tracer = tracing.start_from_environment(environment)
    assert tracer is not None and tracing.active() is tracer


def test_without_the_extra_a_worker_traces_nothing_and_says_why() -> None:
    # opentelemetry unimportable, as without the extra (redis-py imports it when present).
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "from spane_cli.engine import tracing, worker\n"
        "print(tracing.installed(), tracing.start_from_environment("
        "{'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:4318'}))\n"
        "print([m for m in sys.modules if m.startswith('prometheus_client')])\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert shown.stdout.splitlines() == ["False None", "[]"]
    assert "the otel extra is not installed" in shown.stderr
