"""OpenTelemetry traces (the `otel` extra): one trace per execution, one span per node attempt
(or foreach item), whichever worker runs it.

The trace id is the execution id (a UUID is 128 bits, as a trace id is), so the spans that
workers on different machines send land in one trace without passing any context around;
they hang under a parent span id derived from the same id. Exporting follows the standard
OTEL_EXPORTER_OTLP_* variables; tracing is on when one of the endpoint variables is set.
Without the extra nothing is imported: `active()` stays None and a worker pays one look.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

from spane_cli.store.records import ClaimedNode
from spane_cli.text import first_line

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_SERVICE_NAME = "spane-worker"
TRACER_NAME = "spane"

log = logging.getLogger("spane.worker")


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


class NodeTracer:
    """Starts and ends node spans on the given TracerProvider."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME)

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


def start(provider: Any) -> NodeTracer:
    """Trace node runs of this process on `provider` (an SDK TracerProvider)."""
    global _active
    _active = NodeTracer(provider)
    return _active


def stop() -> None:
    global _active
    tracer, _active = _active, None
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
