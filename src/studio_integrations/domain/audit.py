"""The audit log: reading the tenant's canonical events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.errors import UserInputError
from studio_integrations.events.envelope import EventType
from studio_integrations.persistence.audit import AuditEventFilter as AuditEventFilter
from studio_integrations.persistence.audit import AuditEventRepository
from studio_integrations.persistence.models import AuditEvent
from studio_integrations.persistence.repository import Page, PageRequest

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


async def list_audit_events(
    session: AsyncSession, flt: AuditEventFilter, page: PageRequest
) -> Page[AuditEvent]:
    check_event_types(flt.types, field="filter.types")
    if flt.occurred_from and flt.occurred_to and flt.occurred_from > flt.occurred_to:
        raise UserInputError("from must not be after to", field="filter.from", code="INVALID_RANGE")
    return await AuditEventRepository(session).search(flt, page)
