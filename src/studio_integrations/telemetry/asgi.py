"""The request middleware: the request's trace, one metric sample and one log line each.

With tracing on, OpenTelemetry's ASGI instrumentation wraps this middleware and makes the
server span current (from the caller's ``traceparent``); with tracing off this middleware
makes a non-recording span context current itself (``tracing.request_context``). Inner
layers tell it what they learnt through ``RequestRecord`` in the ASGI scope's state: the
GraphQL operation and its outcome (``schema.observability``); the caller's tenant and subject
are read from the principal the gateway put there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio_integrations.telemetry import metrics, tracing

RECORD_STATE = "studio.telemetry"
log = logging.getLogger("studio_integrations.request")

# What ``request_context`` reads when tracing is off (W3C Trace Context and Baggage).
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
# Routes that are not API traffic: not measured, not logged (probes and scrapes).
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class RequestRecord:
    operation: str | None = None  # GraphQL operation name (as sent)
    operation_type: str | None = None  # query | mutation | subscription
    outcome: str | None = None  # set by the GraphQL layer; else from the HTTP status


def record_of(scope: Scope) -> RequestRecord | None:
    state = scope.get("state")
    record = state.get(RECORD_STATE) if isinstance(state, dict) else None
    return record if isinstance(record, RequestRecord) else None


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 401:
        return "unauthenticated"
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "unavailable"
    return "client_error" if status < 500 else "server_error"


class RequestTelemetry:
    def __init__(
        self,
        app: ASGIApp,
        *,
        principal_state: str,
        tenant_labels: bool = False,
    ) -> None:
        self._principal_state = principal_state
        self._tenant_labels = tenant_labels
        self._inner = app
        self.app: ASGIApp = self._measure
        provider = tracing.installed_provider()
        if provider is not None:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

            # No spans per ASGI message: one server span per request (or socket).
            self.app = OpenTelemetryMiddleware(
                self._measure,
                exclude_spans=["receive", "send"],
                excluded_urls="healthz,readyz,metrics",
                tracer_provider=provider,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._inner(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _measure(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in TRACE_HEADERS
        }
        with tracing.request_context(headers):
            if scope["type"] != "http" or scope["path"] in QUIET_PATHS:
                await self._inner(scope, receive, send)
                return
            state = scope.setdefault("state", {})
            record = RequestRecord()
            state[RECORD_STATE] = record
            status = 500
            started = time.perf_counter()

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self._inner(scope, receive, send_status)
            finally:
                self._finish(scope, record, status, time.perf_counter() - started)

    def _finish(self, scope: Scope, record: RequestRecord, status: int, seconds: float) -> None:
        http_outcome = outcome_of(status)
        # An HTTP refusal (401, 413, 429, 503) says more than the GraphQL layer could.
        outcome = record.outcome if http_outcome == "ok" and record.outcome else http_outcome
        if record.operation_type is not None:
            operation, kind = metrics.operation_label(record.operation), record.operation_type
        else:
            operation, kind = _route_label(scope), "http"
        metrics.REQUESTS.labels(operation, kind, outcome).inc()
        metrics.REQUEST_SECONDS.labels(operation, kind, outcome).observe(seconds)
        principal = scope.get("state", {}).get(self._principal_state)
        tenant = getattr(principal, "tenant_id", None)
        if self._tenant_labels and tenant:
            metrics.TENANT_REQUESTS.labels(tenant, outcome).inc()
        extra: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "tenant": tenant,
            "subject": getattr(principal, "subject", None),
            "operation": record.operation,
            "operation_type": record.operation_type,
            "outcome": outcome,
        }
        log.info("request", extra=extra)


def _route_label(scope: Scope) -> str:
    """The route template (never the path: it can carry ids), else ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return f"{scope.get('method', '')} {path}"
    return "OPTIONS preflight" if scope.get("method") == "OPTIONS" else "unmatched"
