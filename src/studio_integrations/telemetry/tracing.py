"""Traces: one mechanism for the trace id of whatever is running.

The active OpenTelemetry span context is the single source of the trace id: the audit
event's ``traceId``, the ``traceId`` stored on runs, failures and deliveries, the ids in log
lines and the outbound W3C ``traceparent`` all read it. The request middleware (see
``telemetry.asgi``) opens it from the caller's ``traceparent``; workers open one per unit of
work with ``span()``; a webhook delivery's sends continue the trace of the event it carries.

Export is off unless the standard ``OTEL_*`` variables ask for it (``configure_tracing``).
When it is off, ``span()`` still establishes a (non-recording) span context, so trace ids
and ``traceparent`` propagation work the same and cost next to nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TracerProvider,
)

from studio_integrations.core.trace import new_trace_id

log = logging.getLogger(__name__)

TRACER_NAME = "studio_integrations"


@dataclass
class _Installed:
    """The tracer provider the service records with (None: tracing off). Passed explicitly to
    the instrumentations instead of relying on OpenTelemetry's set-once global, so a test can
    install one and take it away again."""

    provider: TracerProvider | None = None
    tracer: Tracer | None = None


_installed = _Installed()

AttributeValue = str | bool | int | float


def tracing_active() -> bool:
    """True when a tracer provider is installed, i.e. spans are recorded."""
    return _installed.tracer is not None


def install_tracer_provider(provider: TracerProvider | None) -> None:
    """Record spans with ``provider`` from now on (None: stop). Apps and services built
    while one is installed are instrumented with it."""
    _installed.provider = provider
    _installed.tracer = provider.get_tracer(TRACER_NAME) if provider is not None else None


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK tracer provider with an OTLP (or console) exporter when the standard
    ``OTEL_*`` variables ask for one; once per process. Returns whether tracing is on."""
    env = os.environ if environ is None else environ
    if tracing_active():
        return True
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter_name == "none" or not (endpoint or exporter_name in ("otlp", "console")):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler comes
    # from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", TRACER_NAME)})
    provider = TracerProvider(resource=resource, sampler=studio_sampler())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install_tracer_provider(provider)
    log.info("OpenTelemetry tracing on (exporter %s)", exporter_name or "otlp")
    return True


def studio_sampler() -> Any:
    """The ``OTEL_TRACES_SAMPLER`` sampler, except that client spans without a parent are
    dropped: a worker's idle poll (a claim query that finds nothing) is not a trace."""
    from opentelemetry.sdk.trace import sampling

    base = sampling._get_from_env_or_default()

    class NoOrphanClientSpans(sampling.Sampler):
        def should_sample(
            self,
            parent_context: otel_context.Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> sampling.SamplingResult:
            parent = trace.get_current_span(parent_context).get_span_context()
            if kind is SpanKind.CLIENT and not parent.is_valid:
                return sampling.SamplingResult(sampling.Decision.DROP)
            return base.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"NoOrphanClientSpans({base.get_description()})"

    return NoOrphanClientSpans()


def _random_context(trace_id: int | None = None, flags: int = TraceFlags.SAMPLED) -> SpanContext:
    return SpanContext(
        trace_id=trace_id if trace_id is not None else int(new_trace_id(), 16),
        span_id=int(secrets.token_hex(8), 16) or 1,
        is_remote=False,
        trace_flags=TraceFlags(flags),
    )


def _parent_of(trace_id: str | None) -> otel_context.Context | None:
    """A context whose parent is the stored trace ``trace_id`` (a remote parent span)."""
    if not trace_id:
        return None
    try:
        value = int(trace_id, 16)
    except ValueError:
        return None
    if not value:
        return None
    parent = SpanContext(
        trace_id=value,
        span_id=int(secrets.token_hex(8), 16) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent), otel_context.Context())


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    trace_id: str | None = None,
) -> Iterator[Span]:
    """A span around one unit of work, current while the block runs.

    ``trace_id`` continues a stored trace (a webhook delivery's event) instead of the current
    one. With tracing off, a non-recording span context is made current instead (the current
    trace, else ``trace_id``, else a new one), so trace ids stay consistent within the block.
    """
    parent = _parent_of(trace_id)
    tracer = _installed.tracer
    if tracer is not None:
        with tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=dict(attributes or {})
        ) as current:
            yield current
        return
    if parent is not None:
        base = trace.get_current_span(parent).get_span_context()
    else:
        base = trace.get_current_span().get_span_context()
    ctx = _random_context(base.trace_id if base.is_valid else None)
    current = NonRecordingSpan(ctx)
    token = otel_context.attach(trace.set_span_in_context(current))
    try:
        yield current
    finally:
        otel_context.detach(token)


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add the W3C ``traceparent`` (and the other configured propagators' headers) of the
    current span to outbound request headers."""
    propagate.inject(headers)


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The context an incoming request's ``traceparent`` names (empty when absent or invalid)."""
    return propagate.extract(headers)


@contextmanager
def request_context(headers: Mapping[str, str]) -> Iterator[None]:
    """For the request middleware when tracing is off: make the caller's trace (else a new
    one) current, under a span id of our own. (With tracing on, the ASGI instrumentation has
    already made its server span current and this does nothing.)"""
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    remote = trace.get_current_span(extract_context(headers)).get_span_context()
    ctx = (
        _random_context(remote.trace_id, remote.trace_flags)
        if remote.is_valid
        else _random_context()
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))
    try:
        yield
    finally:
        otel_context.detach(token)


def instrument_engine(sync_engine: Any) -> None:
    """Database spans (one per statement) for an engine, when tracing is on."""
    tracer = _installed.tracer
    if tracer is None:
        return
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    meter = metrics.get_meter(TRACER_NAME)
    usage = meter.create_up_down_counter("db.client.connections.usage", unit="connections")
    EngineTracer(tracer, sync_engine, usage)  # type: ignore[no-untyped-call]


def instrument_client(client: Any) -> None:
    """Client spans for an outbound ``httpx.AsyncClient``, when tracing is on."""
    if _installed.provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_installed.provider)


def installed_provider() -> TracerProvider | None:
    return _installed.provider


def record_error(current: Span, error: BaseException | str) -> None:
    """Mark a span failed (a worker outcome that is a failure without an exception)."""
    if not current.is_recording():
        return
    from opentelemetry.trace import Status, StatusCode

    if isinstance(error, BaseException):
        current.record_exception(error)
        current.set_status(Status(StatusCode.ERROR, type(error).__name__))
    else:
        current.set_status(Status(StatusCode.ERROR, error))
