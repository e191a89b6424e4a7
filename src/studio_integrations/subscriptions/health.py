"""healthChanged and integrationFailures subscriptions.

Both read the caller's tenant channel (chosen from the token, never from an argument)
through the fan-out hub, and apply their filters here, on the server: a client receives only
the events it asked for; ``after`` resumes from a pushed item's cursor. Each delivered object
gets loaders of its own, so nested fields (``connection``, ``run``) are read fresh for each
event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.enums import FailureCategory
from studio_integrations.events.envelope import EventType
from studio_integrations.resolvers.loaders import Loaders
from studio_integrations.schema.context import Info
from studio_integrations.schema.health import HealthChange, IntegrationFailure
from studio_integrations.subscriptions.hub import resumable_events


async def subscribe_health_changed(
    info: Info,
    connection_id: strawberry.ID | None = None,
    provider_id: strawberry.ID | None = None,
    after: strawberry.ID | None = None,
) -> AsyncGenerator[HealthChange, None]:
    principal = info.context.require_principal()
    services = info.context.services
    wanted_connection = str(connection_id) if connection_id is not None else None
    wanted_provider = str(provider_id) if provider_id is not None else None
    async with resumable_events(services, principal.tenant_id, after) as envelopes:
        async for envelope in envelopes:
            if envelope.tenant_id != principal.tenant_id:
                continue  # defence in depth: channels are per tenant already
            if envelope.type != EventType.CONNECTION_HEALTH_CHANGED:
                continue
            data = envelope.data
            if wanted_connection is not None and data.get("connectionId") != wanted_connection:
                continue
            if wanted_provider is not None and data.get("providerId") != wanted_provider:
                continue
            yield HealthChange.from_envelope(envelope, Loaders(services.db, info.context.scope))


async def subscribe_integration_failures(
    info: Info,
    category: FailureCategory | None = None,
    connection_id: strawberry.ID | None = None,
    after: strawberry.ID | None = None,
) -> AsyncGenerator[IntegrationFailure, None]:
    principal = info.context.require_principal()
    services = info.context.services
    wanted_connection = str(connection_id) if connection_id is not None else None
    async with resumable_events(services, principal.tenant_id, after) as envelopes:
        async for envelope in envelopes:
            if envelope.tenant_id != principal.tenant_id:
                continue
            if envelope.type != EventType.INTEGRATION_FAILURE_RAISED:
                continue
            data = envelope.data
            if category is not None and data.get("category") != category.value:
                continue
            if wanted_connection is not None and data.get("connectionId") != wanted_connection:
                continue
            yield IntegrationFailure.from_envelope(
                envelope, Loaders(services.db, info.context.scope)
            )


@strawberry.type
class HealthSubscription:
    health_changed: AsyncGenerator[HealthChange, None] = strawberry.subscription(
        resolver=subscribe_health_changed,
        extensions=requires(Scope.HEALTH_READ),
        description="Each change of a connection's health status, optionally of one connection "
        "or provider. Requires `health:read`."
        "With `after` (a pushed item's `cursor`) it first replays, in commit order, what was "
        "committed since.",
    )

    integration_failures: AsyncGenerator[IntegrationFailure, None] = strawberry.subscription(
        resolver=subscribe_integration_failures,
        extensions=requires(Scope.HEALTH_READ),
        description="Failures as they happen, optionally of one category or connection. "
        "Requires `health:read`."
        "With `after` (a pushed item's `cursor`) it first replays, in commit order, what was "
        "committed since.",
    )
