"""auditEvents query."""

from __future__ import annotations

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.domain.audit import AuditEventFilter as DomainFilter
from studio_integrations.domain.audit import list_audit_events
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.schema.audit import AuditEvent, AuditEventConnection, AuditEventFilter
from studio_integrations.schema.context import Info


async def resolve_audit_events(
    info: Info,
    filter: AuditEventFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> AuditEventConnection:
    flt = filter or AuditEventFilter()
    page_request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await list_audit_events(
            session,
            DomainFilter(
                types=flt.types,
                subject_id=flt.subject_id,
                actor=flt.actor,
                occurred_from=flt.from_,
                occurred_to=flt.to,
            ),
            page_request,
        )
    return AuditEventConnection.from_page(page, AuditEvent.from_row)


@strawberry.type
class AuditQuery:
    audit_events: AuditEventConnection | None = strawberry.field(
        resolver=resolve_audit_events,
        extensions=requires(Scope.AUDIT_READ),
        description="The tenant's audit log, newest first. Requires `audit:read`.",
    )
