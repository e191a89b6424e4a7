"""webhookDeliveryUpdated(direction, subscriptionId): each status change of a delivery of
the caller's tenant, as it is recorded.

Status changes are not audit events (DESIGN §6 has no such type, and a retrying delivery
changes often), so they travel on their own per-tenant channel of the same bus
(``<ns>.webhooks.tenant.<tid>.events``), published by whoever recorded the change (the
dispatcher, the inbound endpoint, a replay) after its commit. The message names the
delivery; the subscriber reads the delivery's current row (with its attempts) in a fresh
session, so a subscriber never sees a state that was not committed. Like the auditEvents
subscription, the channel comes from the caller's token, and filters apply server-side.
Best effort: a change published while the bus is down is not pushed (the log has it).
Read through the fan-out hub like the other subscriptions: one bus subscription per tenant,
a bounded queue per subscriber (``SLOW_CONSUMER``), cohorts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.enums import DeliveryDirection, DeliveryStatus
from studio_integrations.events.feeds import UPDATE_TYPE, DeliveryFeed
from studio_integrations.schema.context import Info
from studio_integrations.schema.webhooks import WebhookDelivery
from studio_integrations.subscriptions.hub import tenant_events


async def subscribe_webhook_delivery_updated(
    info: Info,
    direction: DeliveryDirection | None = None,
    subscription_id: strawberry.ID | None = None,
) -> AsyncGenerator[WebhookDelivery, None]:
    principal = info.context.require_principal()
    services = info.context.services
    feed: DeliveryFeed = services.webhook_feed
    async with tenant_events(services, principal.tenant_id, bus=feed.bus) as envelopes:
        async for envelope in envelopes:
            if envelope.tenant_id != principal.tenant_id or envelope.type != UPDATE_TYPE:
                continue
            data = envelope.data
            if direction is not None and data.get("direction") != direction.value:
                continue
            if subscription_id is not None and data.get("subscriptionId") != str(subscription_id):
                continue
            status = data.get("status")
            delivery = await WebhookDelivery.load_fresh(
                info,
                envelope.subject.id,
                DeliveryStatus(status)
                if isinstance(status, str) and status in DeliveryStatus.__members__
                else None,
            )
            if delivery is not None:
                yield delivery


@strawberry.type
class WebhooksSubscription:
    webhook_delivery_updated: AsyncGenerator[WebhookDelivery, None] = strawberry.subscription(
        resolver=subscribe_webhook_delivery_updated,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="Each status change of the tenant's webhook deliveries, optionally of one "
        "direction or subscription. Requires `webhooks:read`.",
    )
