"""Emitting events the way a governed action does (for tests of the event plumbing)."""

from __future__ import annotations

from studio_integrations.core.context import ActionContext, Actor
from studio_integrations.core.enums import ActorKind
from studio_integrations.events.envelope import EventEnvelope, EventType
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
