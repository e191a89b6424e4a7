"""The audit log: reading the tenant's canonical events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.errors import UserInputError
from studio_integrations.events.envelope import EventType
from studio_integrations.persistence.models import AuditEvent
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository

KNOWN_EVENT_TYPES = frozenset(t.value for t in EventType)


def check_event_types(types: Sequence[str] | None, *, field: str = "types") -> frozenset[str]:
    if not types:
        return frozenset()
    unknown = sorted(set(types) - KNOWN_EVENT_TYPES)
    if unknown:
        raise UserInputError(
            f"unknown event type(s): {', '.join(unknown)}", field=field, code="UNKNOWN_EVENT_TYPE"
        )
    return frozenset(types)


@dataclass(frozen=True, slots=True)
class AuditEventFilter:
    types: Sequence[str] | None = None
    subject_id: str | None = None
    actor: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


class AuditEventRepository(TenantRepository[AuditEvent]):
    model = AuditEvent

    async def search(self, flt: AuditEventFilter, page: PageRequest) -> Page[AuditEvent]:
        stmt = self.select()
        types = check_event_types(flt.types, field="filter.types")
        if types:
            stmt = stmt.where(AuditEvent.type.in_(types))
        if flt.subject_id:
            stmt = stmt.where(AuditEvent.subject_id == flt.subject_id)
        if flt.actor:
            stmt = stmt.where(AuditEvent.actor_subject == flt.actor)
        if flt.occurred_from and flt.occurred_to and flt.occurred_from > flt.occurred_to:
            raise UserInputError(
                "from must not be after to", field="filter.from", code="INVALID_RANGE"
            )
        if flt.occurred_from:
            stmt = stmt.where(AuditEvent.occurred_at >= flt.occurred_from)
        if flt.occurred_to:
            stmt = stmt.where(AuditEvent.occurred_at <= flt.occurred_to)
        return await self.page(stmt, page)


async def list_audit_events(
    session: AsyncSession, flt: AuditEventFilter, page: PageRequest
) -> Page[AuditEvent]:
    return await AuditEventRepository(session).search(flt, page)
