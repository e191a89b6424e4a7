"""Per-tenant channels that are not audit events: delivery status changes."""

from __future__ import annotations

import logging

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import SYSTEM_ACTOR
from studio_integrations.core.ids import new_id
from studio_integrations.core.trace import current_trace_id
from studio_integrations.events.bus import EventBus
from studio_integrations.events.envelope import EventEnvelope, EventSubject
from studio_integrations.persistence.models import WebhookDelivery

log = logging.getLogger(__name__)

UPDATE_TYPE = "WebhookDeliveryUpdated"


class DeliveryFeed:
    """The per-tenant channel of delivery status changes (its own ``EventBus`` namespace),
    read by the ``webhookDeliveryUpdated`` subscription (``subscriptions.webhooks``). Status
    changes are not audit events: they are published after the change's commit, best effort
    (a change published while the bus is down is not pushed; the delivery log has it)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.bus = EventBus(url, namespace=f"{namespace}.webhooks")

    async def connect(self) -> None:
        await self.bus.connect()

    async def disconnect(self) -> None:
        await self.bus.disconnect()

    async def publish(self, row: WebhookDelivery) -> None:
        envelope = EventEnvelope(
            id=new_id("AuditEvent"),
            type=UPDATE_TYPE,
            tenant_id=row.tenant_id,
            occurred_at=utcnow(),
            actor=SYSTEM_ACTOR,
            trace_id=current_trace_id(),  # the send's trace (the event's)
            subject=EventSubject(type="WebhookDelivery", id=row.id),
            data={
                "status": row.status.value,
                "direction": row.direction.value,
                "subscriptionId": row.subscription_id,
            },
        )
        try:
            await self.bus.publish(row.tenant_id, envelope.to_json())
        except Exception:
            log.debug("delivery update not published", exc_info=True)
