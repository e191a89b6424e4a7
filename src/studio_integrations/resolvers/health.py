"""externalHealth and integrationFailures queries."""

from __future__ import annotations

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.domain import health as domain
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.schema.context import Info
from studio_integrations.schema.health import (
    ExternalHealth,
    ExternalHealthFilter,
    IntegrationFailure,
    IntegrationFailureConnection,
    IntegrationFailureFilter,
)


async def resolve_external_health(
    info: Info, filter: ExternalHealthFilter | None = None
) -> ExternalHealth:
    flt = (filter or ExternalHealthFilter()).to_domain()
    async with info.context.read() as session:
        view = await domain.external_health(session, flt)
    return ExternalHealth.from_view(view)


async def resolve_integration_failures(
    info: Info,
    filter: IntegrationFailureFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> IntegrationFailureConnection:
    flt = (filter or IntegrationFailureFilter()).to_domain()
    page_request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_failures(session, flt, page_request)
    result = IntegrationFailureConnection.from_page(page, IntegrationFailure.from_row)
    assert isinstance(result, IntegrationFailureConnection)
    result.failure_filter = flt
    return result


@strawberry.type
class HealthQuery:
    external_health: ExternalHealth | None = strawberry.field(
        resolver=resolve_external_health,
        extensions=requires(Scope.HEALTH_READ),
        description=(
            "Every live connection's health (latency, error rate, circuit), per connection "
            "and per provider. Requires `health:read`."
        ),
    )

    integration_failures: IntegrationFailureConnection | None = strawberry.field(
        resolver=resolve_integration_failures,
        extensions=requires(Scope.HEALTH_READ),
        description=(
            "Failed runs and deliveries, newest first, with their escalation; `groups` counts "
            "them per category. Requires `health:read`."
        ),
    )
