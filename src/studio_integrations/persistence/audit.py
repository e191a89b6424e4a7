"""The audit log's SQL: the tenant's canonical events, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from studio_integrations.persistence.models import AuditEvent
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository


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
        if flt.types:
            stmt = stmt.where(AuditEvent.type.in_(set(flt.types)))
        if flt.subject_id:
            stmt = stmt.where(AuditEvent.subject_id == flt.subject_id)
        if flt.actor:
            stmt = stmt.where(AuditEvent.actor_subject == flt.actor)
        if flt.occurred_from:
            stmt = stmt.where(AuditEvent.occurred_at >= flt.occurred_from)
        if flt.occurred_to:
            stmt = stmt.where(AuditEvent.occurred_at <= flt.occurred_to)
        return await self.page(stmt, page)
