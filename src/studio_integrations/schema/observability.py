"""One span per GraphQL operation (name, type, document hash; never variables), and what the
request middleware needs for its metric and log line (``telemetry.asgi.RequestRecord``).

No per-field spans: the operation span is the finest GraphQL-level span; database and
outbound calls below it have their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from studio_integrations.telemetry import tracing
from studio_integrations.telemetry.asgi import record_of


class OperationTelemetry(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        ec = self.execution_context
        attributes: dict[str, tracing.AttributeValue] = {}
        if ec.query:
            digest = hashlib.sha256(ec.query.encode()).hexdigest()
            attributes["graphql.document.sha256"] = digest
        with tracing.span("graphql.operation", attributes) as current:
            outcome = "server_error"
            try:
                yield
                outcome = _outcome(ec.result)
            except GraphQLError:
                outcome = "client_error"  # a parse failure, thrown through the hooks
                raise
            finally:
                name = _safe(lambda: ec.operation_name)
                kind = _safe(lambda: ec.operation_type.value)
                if current.is_recording():
                    current.update_name(f"{kind or 'graphql'} {name or 'anonymous'}")
                    if name:
                        current.set_attribute("graphql.operation.name", name)
                    if kind:
                        current.set_attribute("graphql.operation.type", kind)
                    current.set_attribute("studio.outcome", outcome)
                    if outcome == "server_error":
                        tracing.record_error(current, "unexpected error")
                request = getattr(ec.context, "request", None)
                record = record_of(request.scope) if request is not None else None
                if record is not None:
                    record.operation, record.operation_type = name, kind or "unknown"
                    record.outcome = outcome


def _outcome(result: Any) -> str:
    errors = getattr(result, "errors", None) or []
    if not errors:
        return "ok"
    codes = {(e.extensions or {}).get("code") for e in errors}
    return "server_error" if "INTERNAL_SERVER_ERROR" in codes else "client_error"


def _safe(read: Any) -> str | None:
    try:
        value = read()
    except Exception:
        return None
    return value if isinstance(value, str) else None


TRACE_ID_DOC = "The W3C trace id of the work that produced this (the request's, or a worker's)."
TRACE_URL_DOC = (
    "A link to the trace in the observability tool (`STUDIO_TRACE_URL_TEMPLATE`); null when "
    "no template is configured or there is no trace id."
)


def trace_url(info: Any, trace_id: str | None) -> str | None:
    """``STUDIO_TRACE_URL_TEMPLATE`` with ``{traceId}`` filled in."""
    template: str | None = info.context.services.settings.trace_url_template
    if not template or not trace_id:
        return None
    return template.replace("{traceId}", trace_id)
