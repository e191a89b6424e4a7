"""The one way to emit an event: audit record + outbox row, in the caller's transaction.

Every governed action calls ``emit_event`` with the session that holds its state change, so
the change and its event commit or roll back together. The relay (``workers.outbox_relay``)
publishes committed outbox rows; a bus outage delays them and loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.ids import new_id
from studio_integrations.events.catalog import check_data
from studio_integrations.events.envelope import EventEnvelope, EventSubject, EventType
from studio_integrations.persistence.db import Database, StudioSession
from studio_integrations.persistence.models import AuditEvent, OutboxMessage

PENDING_KEY = "studio.outbox.pending"


def tenant_channel(namespace: str, tenant_id: str) -> str:
    """The bus channel of one tenant's events."""
    return f"{namespace}.tenant.{tenant_id}.events"


STRICT_EVENTS_KEY = "studio.strict_events"


def emit_event(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    type: EventType,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any] | None = None,
) -> EventEnvelope:
    # The documented shape (``webhookEventTypes``) is the emitted one: a mismatch is a bug,
    # an error outside production (STRICT_EVENTS_KEY), a warning in it.
    check_data(type.value, data or {}, strict=session.info.get(STRICT_EVENTS_KEY, True))
    envelope = EventEnvelope(
        id=new_id("AuditEvent"),
        type=type.value,
        tenant_id=ctx.tenant_id,
        occurred_at=utcnow(),
        actor=ctx.actor,
        trace_id=ctx.trace_id,
        subject=EventSubject(type=subject_type, id=subject_id),
        data=data or {},
    )
    session.add(
        AuditEvent(
            id=envelope.id,
            tenant_id=ctx.tenant_id,
            type=envelope.type,
            occurred_at=envelope.occurred_at,
            actor_subject=ctx.actor.subject,
            actor_kind=ctx.actor.kind,
            actor_name=ctx.actor.name,
            trace_id=ctx.trace_id,
            subject_type=subject_type,
            subject_id=subject_id,
            data=envelope.data,
        )
    )
    session.add(
        OutboxMessage(
            tenant_id=ctx.tenant_id,
            event_id=envelope.id,
            payload=envelope.to_json(),
        )
    )
    session.info[PENDING_KEY] = True
    return envelope


def wake_on_commit(db: Database, wake: Callable[[], None]) -> None:
    """Call ``wake`` (the relay's) after each commit of ``db`` that emitted events, so the
    relay publishes at once instead of at its next poll."""

    def committed(session: Session) -> None:
        if session.info.pop(PENDING_KEY, False):
            wake()

    db.after_commit(committed)


@event.listens_for(StudioSession, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)
