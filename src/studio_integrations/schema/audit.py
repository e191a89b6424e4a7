"""Audit event types: the canonical envelope as GraphQL."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

import studio_integrations.schema.enums  # noqa: F401  (registers the enums)
from studio_integrations.domain.enums import ActorKind
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.persistence.models import AuditEvent as AuditEventRow
from studio_integrations.schema.context import Info
from studio_integrations.schema.observability import TRACE_URL_DOC, trace_url
from studio_integrations.schema.relay import Connection, Node


@strawberry.type(description="Who performed an action.")
class EventActor:
    subject: str
    kind: ActorKind
    name: str | None


@strawberry.type(description="The object an event is about; `id` works with `node(id:)`.")
class EventSubject:
    type: str
    id: strawberry.ID


@strawberry.type(description="A canonical event (DESIGN §6), kept forever per tenant.")
class AuditEvent(Node):
    type: str
    tenant_id: str
    occurred_at: datetime
    actor: EventActor
    trace_id: str
    subject: EventSubject
    data: JSON

    @strawberry.field(description=TRACE_URL_DOC)
    def trace_url(self, info: Info) -> str | None:
        return trace_url(info, self.trace_id)

    @classmethod
    def from_row(cls, row: AuditEventRow) -> AuditEvent:
        return cls(
            id=strawberry.ID(row.id),
            type=row.type,
            tenant_id=row.tenant_id,
            occurred_at=row.occurred_at,
            actor=EventActor(subject=row.actor_subject, kind=row.actor_kind, name=row.actor_name),
            trace_id=row.trace_id,
            subject=EventSubject(type=row.subject_type, id=strawberry.ID(row.subject_id)),
            data=cast(JSON, row.data),
        )

    @classmethod
    def from_envelope(cls, env: EventEnvelope) -> AuditEvent:
        return cls(
            id=strawberry.ID(env.id),
            type=env.type,
            tenant_id=env.tenant_id,
            occurred_at=env.occurred_at,
            actor=EventActor(subject=env.actor.subject, kind=env.actor.kind, name=env.actor.name),
            trace_id=env.trace_id,
            subject=EventSubject(type=env.subject.type, id=strawberry.ID(env.subject.id)),
            data=cast(JSON, env.data),
        )


@strawberry.input(description="Narrow the audit log. All given conditions must hold.")
class AuditEventFilter:
    types: list[str] | None = None
    subject_id: strawberry.ID | None = None
    actor: str | None = strawberry.field(default=None, description="The actor's subject.")
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None


AuditEventConnection = Connection[AuditEvent]
