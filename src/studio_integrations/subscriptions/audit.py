"""auditEvents(types) subscription: the caller's tenant's events, as they are published.

The bus channel is chosen from the caller's token, never from an argument, so a subscriber
can only ever receive its own tenant's events. The per-process fan-out hub
(``subscriptions.hub``) fans one bus subscription per channel out to every local subscriber,
each with a bounded queue. With ``after`` (a pushed event's ``cursor``) the stream first
replays what was committed since (``events.replay``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.domain.audit import check_event_types
from studio_integrations.schema.audit import AuditEvent
from studio_integrations.schema.context import Info
from studio_integrations.subscriptions.hub import resumable_events


async def subscribe_audit_events(
    info: Info, types: list[str] | None = None, after: strawberry.ID | None = None
) -> AsyncGenerator[AuditEvent, None]:
    wanted = check_event_types(types)
    principal = info.context.require_principal()
    services = info.context.services
    async with resumable_events(services, principal.tenant_id, after) as envelopes:
        async for envelope in envelopes:
            if envelope.tenant_id != principal.tenant_id:
                continue  # defence in depth: channels are per tenant already
            if wanted and envelope.type not in wanted:
                continue
            yield AuditEvent.from_envelope(envelope)


@strawberry.type
class AuditSubscription:
    audit_events: AsyncGenerator[AuditEvent, None] = strawberry.subscription(
        resolver=subscribe_audit_events,
        extensions=requires(Scope.AUDIT_READ),
        description=(
            "The tenant's events as they happen, optionally only some types. Requires "
            "`audit:read`. With `after` (a pushed event's `cursor`) it first replays, in "
            "commit order, what was committed since."
        ),
    )
