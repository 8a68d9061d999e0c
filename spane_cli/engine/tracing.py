"""OpenTelemetry traces (the `otel` extra): one trace per execution, one span per node attempt
(or foreach item), whichever worker runs it.

The trace id is the execution id (a UUID is 128 bits, as a trace id is), so the spans that
workers on different machines send land in one trace without passing any context around;
they hang under a parent span id derived from the same id. That parent, the execution's own
span (from its creation to its end), is sent by the worker that records the execution's end,
with the ids forced through the provider's id generator. Exporting follows the standard
OTEL_EXPORTER_OTLP_* variables; tracing is on when one of the endpoint variables is set.
Without the extra nothing is imported: `active()` stays None and a worker pays one look.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

from spane_cli.store import events
from spane_cli.store.records import ClaimedNode, EventRow
from spane_cli.store.tx import EVENT_OBSERVERS, Caches
from spane_cli.text import first_line

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_SERVICE_NAME = "spane-worker"
TRACER_NAME = "spane"

log = logging.getLogger("spane.worker")
_ENDINGS = frozenset(
    {events.EXECUTION_SUCCEEDED, events.EXECUTION_FAILED, events.EXECUTION_CANCELLED}
)
# (trace id, span id) the next span must have: the execution's span, started by us.
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "spane_forced_span_ids", default=None
)


def installed() -> bool:
    """Whether the otel extra is there (looked up without importing it)."""
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:  # no `opentelemetry` package at all
        return False


def execution_trace_id(execution_id: str) -> int:
    """The execution's trace id: its UUID's 128 bits (a hash of the id when it is none)."""
    try:
        value = uuid.UUID(execution_id).int
    except ValueError:
        value = uuid.uuid5(uuid.NAMESPACE_URL, execution_id).int
    return value or 1  # the all-zero id is invalid


def execution_span_id(execution_id: str) -> int:
    """The parent span id every node span of the execution hangs under."""
    return (execution_trace_id(execution_id) & 0xFFFF_FFFF_FFFF_FFFF) or 1


def _execution_ids(random_ids: Any) -> Any:
    """An id generator that gives the forced ids when asked for them, random ones else."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class ExecutionIds(IdGenerator):
        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced is not None else int(random_ids.generate_span_id())

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced is not None else int(random_ids.generate_trace_id())

    return ExecutionIds()


class NodeTracer:
    """Starts and ends node spans on the given TracerProvider, and sends each execution's
    span when its end is recorded here."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        # Before the tracer is made: it takes the provider's generator with it.
        provider.id_generator = _execution_ids(provider.id_generator)
        self._tracer = provider.get_tracer(TRACER_NAME)

    def observe_events(self, caches: Caches, written: list[EventRow]) -> None:
        for execution_id, node_id, event_type, _ in written:
            if node_id is None and event_type in _ENDINGS:
                self.execution_ended(execution_id)

    def execution_ended(self, execution_id: str) -> None:
        from opentelemetry.context import Context
        from opentelemetry.trace import Status, StatusCode

        from spane_cli.store import queries

        row = queries.require_execution(execution_id)
        ids = (execution_trace_id(execution_id), execution_span_id(execution_id))
        token = _forced_ids.set(ids)
        try:
            span = self._tracer.start_span(
                f"execution {row.workflow}",
                context=Context(),  # a root: no parent
                start_time=int(row.created_at * 1e9),
                attributes={
                    "spane.execution_id": execution_id,
                    "spane.workflow": row.workflow,
                    "spane.status": row.status,
                },
            )
        finally:
            _forced_ids.reset(token)
        if row.status != "succeeded":
            span.set_status(Status(StatusCode.ERROR, first_line(row.error, row.status)))
        ended = row.finished_at if row.finished_at is not None else row.created_at
        span.end(end_time=int(ended * 1e9))

    def start(self, claim: ClaimedNode, type_name: str) -> Any:
        from opentelemetry import trace

        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=execution_trace_id(claim.execution_id),
                span_id=execution_span_id(claim.execution_id),
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
        attributes: dict[str, Any] = {
            "spane.execution_id": claim.execution_id,
            "spane.workflow": claim.version.workflow.name,
            "spane.node": claim.node_id,
            "spane.node_type": type_name,
            "spane.attempt": claim.attempt,
        }
        if claim.item is not None:
            attributes["spane.item"] = claim.item
        if claim.worker is not None:
            attributes["spane.worker"] = claim.worker
        name = claim.node_id if claim.item is None else f"{claim.node_id}[{claim.item}]"
        return self._tracer.start_span(
            name, context=trace.set_span_in_context(parent), attributes=attributes
        )

    def end(self, span: Any, status: str, error: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("spane.status", status)
        if status in ("failed", "error"):
            span.set_status(Status(StatusCode.ERROR, first_line(error, status)))
        span.end()

    def shutdown(self) -> None:
        """Send what is still batched (a worker that stops)."""
        self._provider.shutdown()


_active: NodeTracer | None = None


def active() -> NodeTracer | None:
    return _active


def _observe(caches: Caches, written: list[EventRow]) -> None:
    tracer = _active
    if tracer is None:
        return
    try:
        tracer.observe_events(caches, written)
    except Exception as exc:  # the end is committed; a lost span must not undo that
        log.warning("could not send an execution's span: %s", first_line(str(exc)))


def start(provider: Any) -> NodeTracer:
    """Trace node runs of this process on `provider` (an SDK TracerProvider)."""
    global _active
    _active = NodeTracer(provider)
    if _observe not in EVENT_OBSERVERS:
        EVENT_OBSERVERS.append(_observe)
    return _active


def stop() -> None:
    global _active
    tracer, _active = _active, None
    if _observe in EVENT_OBSERVERS:
        EVENT_OBSERVERS.remove(_observe)
    if tracer is not None:
        tracer.shutdown()


def start_from_environment(environ: Mapping[str, str] | None = None) -> NodeTracer | None:
    """Tracing as the OTEL_* variables ask, when an OTLP endpoint is set; None otherwise."""
    environ = os.environ if environ is None else environ
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    if not installed():
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed "
            "(pip install 'spane[otel]'): no traces"
        )
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    defaults = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(defaults))
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    return start(provider)


def _exporter(environ: Mapping[str, str]) -> Any:
    """The OTLP exporter of the protocol asked for (http/protobuf by default, as the
    specification says); each exporter reads its endpoint, headers and timeout itself."""
    protocol = next((environ[n] for n in PROTOCOL_VARIABLES if environ.get(n)), "http/protobuf")
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()
