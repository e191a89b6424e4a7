"""Trace ids of whatever is running: the current OpenTelemetry span context's, the one source
(the request middleware and workers open it; see ``telemetry.tracing``)."""

from __future__ import annotations

import secrets

from opentelemetry import trace


def new_trace_id() -> str:
    return secrets.token_hex(16)


def current_ids() -> tuple[str | None, str | None]:
    """The current trace and span ids (hex), or ``(None, None)`` outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def current_trace_id() -> str:
    """The trace id of the current span; a new one outside any span."""
    trace_id, _span_id = current_ids()
    return trace_id or new_trace_id()
