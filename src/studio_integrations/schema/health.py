"""External health types: the health view, the failure feed and the live health changes.

Objects delivered by subscriptions carry loaders made for their event (a WebSocket's context
lives as long as the socket, so its own loaders would answer from a stale cache).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

import studio_integrations.schema.enums  # noqa: F401  (registers the shared enums)
from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.core.enums import (
    CircuitState,
    ConnectionStatus,
    EscalationStatus,
    FailureCategory,
    HealthStatus,
)
from studio_integrations.domain import health as domain
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.persistence.health import FailureFilter, FailureGroupRow
from studio_integrations.persistence.models import IntegrationConnection as ConnectionRow
from studio_integrations.persistence.models import IntegrationFailure as FailureRow
from studio_integrations.persistence.models import IntegrationRun as RunRow
from studio_integrations.persistence.models import Provider as ProviderRow
from studio_integrations.persistence.models import WebhookDelivery as DeliveryRow
from studio_integrations.resolvers.loaders import Loaders
from studio_integrations.schema.audit import event_cursor_id
from studio_integrations.schema.connections import IntegrationConnection, IntegrationRun
from studio_integrations.schema.context import Info
from studio_integrations.schema.observability import TRACE_ID_DOC, TRACE_URL_DOC, trace_url
from studio_integrations.schema.providers import Provider
from studio_integrations.schema.relay import Connection, Node

if TYPE_CHECKING:
    from studio_integrations.schema.webhooks import WebhookDelivery


def _loaders(own: Loaders | None, info: Info) -> Loaders:
    return own if own is not None else info.context.loaders


async def _connection(
    loaders: Loaders | None, info: Info, connection_id: str | None
) -> IntegrationConnection | None:
    if connection_id is None:
        return None
    row = await _loaders(loaders, info).by_id(ConnectionRow).load(connection_id)
    return None if row is None else IntegrationConnection.from_row(row)


# --- externalHealth -----------------------------------------------------------------------


@strawberry.type(description="One connection's current health (DESIGN §8).")
class ConnectionHealthEntry:
    connection_id: strawberry.ID
    row: strawberry.Private[ConnectionRow]
    status: HealthStatus
    circuit_state: CircuitState
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float = strawberry.field(description="Failed share of the window's calls (0 to 1).")
    consecutive_failures: int
    checked_at: datetime | None
    next_probe_at: datetime | None

    @strawberry.field(
        description="The connection (its configuration is the connections area's data). "
        "Requires `connections:read`.",
        extensions=requires(Scope.CONNECTIONS_READ),
    )
    def connection(self) -> IntegrationConnection | None:
        return IntegrationConnection.from_row(self.row)

    @classmethod
    def from_view(cls, view: domain.ConnectionHealthView) -> ConnectionHealthEntry:
        h = view.health
        return cls(
            connection_id=strawberry.ID(view.connection.id),
            row=view.connection,
            status=h.status,
            circuit_state=h.circuit_state,
            latency_p50_ms=h.latency_p50_ms,
            latency_p95_ms=h.latency_p95_ms,
            error_rate=h.error_rate,
            consecutive_failures=h.consecutive_failures,
            checked_at=h.checked_at,
            next_probe_at=h.next_probe_at,
        )


@strawberry.type(
    description="A provider's health over the tenant's connections to it: HEALTHY when all "
    "are, UNHEALTHY when all are unhealthy, DEGRADED otherwise."
)
class ProviderHealth:
    provider_id: strawberry.ID
    status: HealthStatus
    connection_count: int
    healthy_count: int
    degraded_count: int
    unhealthy_count: int
    open_circuits: int
    latency_p95_ms: float | None = strawberry.field(
        description="The highest p95 latency among its connections."
    )
    error_rate: float = strawberry.field(description="The mean of its connections' rates.")
    checked_at: datetime | None

    @strawberry.field(
        description="The provider definition. Requires `providers:read`.",
        extensions=requires(Scope.PROVIDERS_READ),
    )
    async def provider(self, info: Info) -> Provider | None:
        row = await info.context.loaders.by_id(ProviderRow).load(str(self.provider_id))
        return None if row is None else Provider.from_row(row)

    @classmethod
    def from_view(cls, view: domain.ProviderHealthView) -> ProviderHealth:
        return cls(
            provider_id=strawberry.ID(view.provider_id),
            status=view.status,
            connection_count=view.connections,
            healthy_count=view.healthy,
            degraded_count=view.degraded,
            unhealthy_count=view.unhealthy,
            open_circuits=view.open_circuits,
            latency_p95_ms=view.latency_p95_ms,
            error_rate=view.error_rate,
            checked_at=view.checked_at,
        )


@strawberry.type(description="Every live connection's health, and per provider.")
class ExternalHealth:
    connections: list[ConnectionHealthEntry]
    providers: list[ProviderHealth]
    open_circuits: int = strawberry.field(description="Connections whose circuit is OPEN.")

    @classmethod
    def from_view(cls, view: domain.ExternalHealthView) -> ExternalHealth:
        return cls(
            connections=[ConnectionHealthEntry.from_view(v) for v in view.connections],
            providers=[ProviderHealth.from_view(v) for v in view.providers],
            open_circuits=view.open_circuits,
        )


@strawberry.input(description="Narrow the health view. All given conditions must hold.")
class ExternalHealthFilter:
    provider_id: strawberry.ID | None = None
    status: HealthStatus | None = None
    connection_id: strawberry.ID | None = None

    def to_domain(self) -> domain.HealthFilter:
        return domain.HealthFilter(
            provider_id=str(self.provider_id) if self.provider_id is not None else None,
            status=self.status,
            connection_id=str(self.connection_id) if self.connection_id is not None else None,
        )


# --- integrationFailures ------------------------------------------------------------------


@strawberry.type(description="Which actions the viewer may take on a failure.")
class IntegrationFailureViewerCan:
    retest: bool = strawberry.field(
        description="Test its connection again (testConnection): false when the failure has "
        "no connection or the connection is retired. A delivery failure's replay is its "
        "`delivery { viewerCan { replay } }`."
    )


@strawberry.type(
    description="A failed run or delivery. Failures of one connection and category form a "
    "group; a group reaching the escalation threshold is ESCALATED, and is RESOLVED when the "
    "connection recovers."
)
class IntegrationFailure(Node):
    category: FailureCategory
    message: str
    escalation: EscalationStatus
    occurrences: int = strawberry.field(
        description="How many failures its group had when this one happened (this included)."
    )
    group_key: str
    occurred_at: datetime
    first_seen_at: datetime = strawberry.field(description="When its group's first failure was.")
    resolved_at: datetime | None
    connection_id: strawberry.ID | None
    run_id: strawberry.ID | None
    delivery_id: strawberry.ID | None = strawberry.field(
        description="The originating webhook delivery, for delivery failures."
    )
    cursor: strawberry.ID | None = strawberry.field(
        default=None,
        description="Where this event stands in commit order: pass it as `after` to resume a "
        "subscription from here (null for events not yet published).",
    )
    loaders: strawberry.Private[Loaders | None] = None
    trace_id: str | None = strawberry.field(default=None, description=TRACE_ID_DOC)

    @strawberry.field(description=TRACE_URL_DOC)
    def trace_url(self, info: Info) -> str | None:
        return trace_url(info, self.trace_id)

    @strawberry.field(
        description="The connection that failed. Requires `connections:read`.",
        extensions=requires(Scope.CONNECTIONS_READ),
    )
    async def connection(self, info: Info) -> IntegrationConnection | None:
        cid = str(self.connection_id) if self.connection_id else None
        return await _connection(self.loaders, info, cid)

    @strawberry.field(
        description="The originating run, for run failures. Requires `connections:read`.",
        extensions=requires(Scope.CONNECTIONS_READ),
    )
    async def run(self, info: Info) -> IntegrationRun | None:
        if self.run_id is None:
            return None
        row = await _loaders(self.loaders, info).by_id(RunRow).load(str(self.run_id))
        return None if row is None else IntegrationRun.from_row(row)

    @strawberry.field(
        description="The originating webhook delivery, for delivery failures. "
        "Requires `webhooks:read`.",
        extensions=requires(Scope.WEBHOOKS_READ),
    )
    async def delivery(
        self, info: Info
    ) -> Annotated[WebhookDelivery, strawberry.lazy("studio_integrations.schema.webhooks")] | None:
        from studio_integrations.schema.webhooks import WebhookDelivery

        if self.delivery_id is None:
            return None
        loader = _loaders(self.loaders, info).by_id(DeliveryRow)
        row = await loader.load(str(self.delivery_id))
        return None if row is None else WebhookDelivery.from_row(row)

    @strawberry.field
    async def viewer_can(self, info: Info) -> IntegrationFailureViewerCan:
        principal = info.context.require_principal()
        if not principal.has(ACTION_SCOPES["testConnection"]) or self.connection_id is None:
            return IntegrationFailureViewerCan(retest=False)
        loader = _loaders(self.loaders, info).by_id(ConnectionRow)
        row = await loader.load(str(self.connection_id))
        return IntegrationFailureViewerCan(
            retest=row is not None and row.status != ConnectionStatus.RETIRED
        )

    @classmethod
    def from_row(cls, row: FailureRow) -> IntegrationFailure:
        return cls(
            id=strawberry.ID(row.id),
            category=row.category,
            message=row.message,
            escalation=row.escalation_status,
            occurrences=row.occurrences,
            group_key=row.group_key,
            occurred_at=row.last_seen_at,
            first_seen_at=row.first_seen_at,
            resolved_at=row.resolved_at,
            connection_id=strawberry.ID(row.connection_id) if row.connection_id else None,
            run_id=strawberry.ID(row.run_id) if row.run_id else None,
            delivery_id=strawberry.ID(row.delivery_id) if row.delivery_id else None,
            trace_id=row.trace_id,
        )

    @classmethod
    def from_envelope(cls, env: EventEnvelope, loaders: Loaders) -> IntegrationFailure:
        data = env.data
        first = data.get("firstSeenAt")
        return cls(
            id=strawberry.ID(env.subject.id),
            category=FailureCategory(data["category"]),
            message=str(data.get("message") or ""),
            escalation=EscalationStatus(data.get("escalation") or EscalationStatus.OPEN),
            occurrences=int(data.get("occurrences") or 1),
            group_key=str(data.get("groupKey") or ""),
            occurred_at=env.occurred_at,
            first_seen_at=datetime.fromisoformat(first) if first else env.occurred_at,
            resolved_at=None,
            connection_id=_id(data.get("connectionId")),
            run_id=_id(data.get("runId")),
            delivery_id=_id(data.get("deliveryId")),
            cursor=event_cursor_id(env.sequence),
            loaders=loaders,
            trace_id=env.trace_id,
        )


def _id(value: object) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value else None


@strawberry.type(description="The filtered failures of one category, counted.")
class FailureCategoryGroup:
    category: FailureCategory
    count: int
    escalated_count: int
    unresolved_count: int
    last_seen_at: datetime | None

    @classmethod
    def from_row(cls, row: FailureGroupRow) -> FailureCategoryGroup:
        return cls(
            category=row.category,
            count=row.count,
            escalated_count=row.escalated,
            unresolved_count=row.unresolved,
            last_seen_at=row.last_seen_at,
        )


@strawberry.type(description="A page of failures, newest first, and the filter's totals.")
class IntegrationFailureConnection(Connection[IntegrationFailure]):
    failure_filter: strawberry.Private[FailureFilter | None] = None

    @strawberry.field(
        description="Every failure the filter matches (not only this page), grouped by "
        "category, most frequent first."
    )
    async def groups(self, info: Info) -> list[FailureCategoryGroup]:
        async with info.context.read() as session:
            rows = await domain.failure_groups(session, self.failure_filter or FailureFilter())
        return [FailureCategoryGroup.from_row(r) for r in rows]


@strawberry.input(description="Narrow the failure feed. All given conditions must hold.")
class IntegrationFailureFilter:
    category: FailureCategory | None = None
    connection_id: strawberry.ID | None = None
    escalation: EscalationStatus | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None

    def to_domain(self) -> FailureFilter:
        return FailureFilter(
            category=self.category,
            connection_id=str(self.connection_id) if self.connection_id is not None else None,
            escalation=self.escalation,
            occurred_from=self.from_,
            occurred_to=self.to,
        )


# --- healthChanged ------------------------------------------------------------------------


@strawberry.type(description="A connection's health status changed (ConnectionHealthChanged).")
class HealthChange:
    connection_id: strawberry.ID
    provider_id: strawberry.ID
    previous_status: HealthStatus
    status: HealthStatus
    circuit_state: CircuitState
    latency_ms: float | None = strawberry.field(description="The deciding call's latency.")
    latency_p95_ms: float | None
    error_rate: float
    run_id: strawberry.ID | None = strawberry.field(description="The deciding run.")
    occurred_at: datetime
    trace_id: str
    cursor: strawberry.ID | None = strawberry.field(
        default=None,
        description="Where this event stands in commit order: pass it as `after` to resume a "
        "subscription from here (null for events not yet published).",
    )
    loaders: strawberry.Private[Loaders | None] = None

    @strawberry.field(description=TRACE_URL_DOC)
    def trace_url(self, info: Info) -> str | None:
        return trace_url(info, self.trace_id)

    @strawberry.field(
        description="The connection. Requires `connections:read`.",
        extensions=requires(Scope.CONNECTIONS_READ),
    )
    async def connection(self, info: Info) -> IntegrationConnection | None:
        return await _connection(self.loaders, info, str(self.connection_id))

    @classmethod
    def from_envelope(cls, env: EventEnvelope, loaders: Loaders) -> HealthChange:
        data = env.data
        return cls(
            connection_id=strawberry.ID(str(data["connectionId"])),
            provider_id=strawberry.ID(str(data["providerId"])),
            previous_status=HealthStatus(data["previousStatus"]),
            status=HealthStatus(data["status"]),
            circuit_state=CircuitState(data["circuitState"]),
            latency_ms=data.get("latencyMs"),
            latency_p95_ms=data.get("latencyP95Ms"),
            error_rate=float(data.get("errorRate") or 0.0),
            run_id=_id(data.get("runId")),
            occurred_at=env.occurred_at,
            trace_id=env.trace_id,
            cursor=event_cursor_id(env.sequence),
            loaders=loaders,
        )
