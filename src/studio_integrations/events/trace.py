"""Trace ids of events: the current OpenTelemetry span context's (see ``telemetry.tracing``,
the one mechanism; the request middleware opens it from the caller's W3C ``traceparent``)."""

from __future__ import annotations

from studio_integrations.telemetry.tracing import current_trace_id, new_trace_id

__all__ = ["current_trace_id", "new_trace_id"]
