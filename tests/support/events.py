"""Emitting events the way a governed action does (for tests of the event plumbing)."""

from __future__ import annotations

from typing import Any

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import SYSTEM_ACTOR, ActionContext, Actor
from studio_integrations.core.enums import ActorKind
from studio_integrations.core.ids import new_id
from studio_integrations.events.envelope import EventEnvelope, EventSubject, EventType
from studio_integrations.events.outbox import STRICT_EVENTS_KEY, emit_event
from studio_integrations.persistence.db import TenantScope
from studio_integrations.services import Services


async def emit(
    services: Services,
    tenant_id: str,
    *,
    type: EventType = EventType.PROVIDER_REGISTERED,
    subject_id: str = "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
    trace_id: str = "4bf92f3577b34da6a3ce929d0e0e4736",
    actor: str = "alice",
) -> EventEnvelope:
    ctx = ActionContext(tenant_id, Actor(actor, ActorKind.USER, actor.title()), trace_id)
    async with services.db.transaction(TenantScope.of(tenant_id)) as session:
        # Plumbing tests carry ad-hoc data ({"n": 1}), not the type's documented shape.
        session.info[STRICT_EVENTS_KEY] = False
        return emit_event(
            session, ctx, type=type, subject_type="Provider", subject_id=subject_id, data={"n": 1}
        )


def audit_event(data: dict[str, Any]) -> EventEnvelope:
    """An acme ``ProviderRegistered`` as the relay publishes it to the bus, carrying
    ``data``: for tests that publish straight to the bus (the hub, cohorts, sockets)."""
    return EventEnvelope(
        id=new_id("AuditEvent"),
        type="ProviderRegistered",
        tenant_id="acme",
        occurred_at=utcnow(),
        actor=SYSTEM_ACTOR,
        trace_id="0" * 32,
        subject=EventSubject("Provider", "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ"),
        data=data,
    )


async def plumbing_state(services: Services, tenant_id: str) -> dict[str, object]:
    """Where an event that did not arrive may be: for a test's failure message."""
    from sqlalchemy import func, select

    from studio_integrations.persistence.models import OutboxMessage

    async with services.db.session(TenantScope.system_scope()) as session:
        unpublished = select(func.count()).where(OutboxMessage.published_at.is_(None))
        pending = int((await session.execute(unpublished)).scalar_one())
    bus = services.bus
    redis = getattr(bus, "_redis", None)
    pubsub = getattr(redis, "_pubsub", None)
    relay_task = getattr(services.relay, "_task", None)
    return {
        "outbox_unpublished": pending,
        "relay_published": services.relay.published,
        "relay_running": relay_task is not None and not relay_task.done(),
        "bus_connected": bus.connected,
        "bus_reconnects": getattr(redis, "reconnects", None),
        "bus_wanted": sorted(getattr(redis, "_channels", ())),
        "redis_subscribed": sorted(str(c) for c in getattr(pubsub, "channels", {})),
        "redis_leaving": sorted(
            str(c) for c in getattr(pubsub, "pending_unsubscribe_channels", ())
        ),
        "hub_subscribers": services.live_subscribers(tenant_id),
        "hub_delivered": services.hub.delivered,
        "cohorts": services.hub.cohort_count(),
    }
