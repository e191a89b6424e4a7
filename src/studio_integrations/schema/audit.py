"""Audit event types: the canonical envelope as GraphQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

import studio_integrations.schema.enums  # noqa: F401  (registers the enums)
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.enums import ActorKind
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.events.replay import event_cursor
from studio_integrations.persistence.models import AuditEvent as AuditEventRow
from studio_integrations.schema.context import Info
from studio_integrations.schema.observability import TRACE_URL_DOC, trace_url
from studio_integrations.schema.relay import Connection, Node

# The cross-area rule for event data: a key carrying another area's data needs that area's
# read scope, as the same data needs it everywhere else (``WebhookDelivery.payload`` needs
# ``webhooks:read``). Without it the key is left out and named in ``redacted``.
EVENT_DATA_SCOPES: Mapping[str, Scope] = {
    "payload": Scope.WEBHOOKS_READ,
    "payloadOmitted": Scope.WEBHOOKS_READ,
}


def visible_data(data: Mapping[str, Any], scopes: frozenset[Scope]) -> dict[str, Any]:
    """``data`` without the keys whose area the caller may not read."""
    hidden = sorted(
        k for k, scope in EVENT_DATA_SCOPES.items() if k in data and scope not in scopes
    )
    if not hidden:
        return dict(data)
    visible = {k: v for k, v in data.items() if k not in hidden}
    visible["redacted"] = hidden
    return visible


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
    raw_data: strawberry.Private[Mapping[str, Any]]
    cursor: strawberry.ID | None = strawberry.field(
        default=None,
        description="Where this event stands in commit order: pass it as `after` to resume a "
        "subscription from here (null for events not yet published).",
    )

    @strawberry.field(
        description="The event's secret-free summary. Keys holding another area's data "
        "(an inbound webhook's `payload` needs `webhooks:read`) are left out for callers "
        "without that area's read scope and named in `redacted`."
    )
    def data(self, info: Info) -> JSON:
        scopes = info.context.require_principal().scopes
        return cast(JSON, visible_data(self.raw_data, scopes))

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
            raw_data=row.data or {},
            cursor=event_cursor_id(row.sequence),
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
            raw_data=env.data or {},
            cursor=event_cursor_id(env.sequence),
        )


def event_cursor_id(sequence: int | None) -> strawberry.ID | None:
    cursor = event_cursor(sequence)
    return None if cursor is None else strawberry.ID(cursor)


@strawberry.input(description="Narrow the audit log. All given conditions must hold.")
class AuditEventFilter:
    types: list[str] | None = None
    subject_id: strawberry.ID | None = None
    actor: str | None = strawberry.field(default=None, description="The actor's subject.")
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None


AuditEventConnection = Connection[AuditEvent]
