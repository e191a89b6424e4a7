"""Health repositories: the rolling window's runs, the prober's work claims, the external
health view and the failure feed.

Everything tenant data goes through a session's tenant guard; the prober's claim is the one
cross-tenant statement and runs in a ``TenantScope.system_scope()`` session, visibly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select, update

from studio_integrations.core.enums import (
    ConnectionStatus,
    EscalationStatus,
    FailureCategory,
    HealthStatus,
)
from studio_integrations.persistence.models import (
    ConnectionHealth,
    HealthSnapshot,
    IntegrationConnection,
    IntegrationFailure,
    IntegrationRun,
)
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository


@dataclass(frozen=True, slots=True)
class Claim:
    """A connection a prober took: probe it, then ``release`` it."""

    connection_id: str
    tenant_id: str
    claimed_at: datetime


class HealthStateRepository(TenantRepository[ConnectionHealth]):
    model = ConnectionHealth

    async def for_connection(self, connection_id: str) -> ConnectionHealth | None:
        stmt = self.select().where(ConnectionHealth.connection_id == connection_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def recent_runs(self, connection_id: str, limit: int) -> list[IntegrationRun]:
        """The connection's newest ``limit`` finished runs, newest first."""
        stmt = (
            select(IntegrationRun)
            .where(
                IntegrationRun.connection_id == connection_id,
                IntegrationRun.finished_at.is_not(None),
            )
            .order_by(IntegrationRun.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def latest_snapshot_at(self, connection_id: str) -> datetime | None:
        stmt = select(func.max(HealthSnapshot.checked_at)).where(
            HealthSnapshot.connection_id == connection_id
        )
        value: datetime | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return value

    # -- the prober's work queue ------------------------------------------------------------

    async def claim_due(
        self, now: datetime, limit: int, lease: timedelta, interval: timedelta
    ) -> list[Claim]:
        """Take up to ``limit`` due connections (system scope): each gets a lease, and its
        next probe moves past the lease, so another replica takes it over only when this one
        dies. ``FOR UPDATE SKIP LOCKED`` on PostgreSQL lets replicas claim side by side;
        SQLite serialises writers (``BEGIN IMMEDIATE``). A connection never checked yet
        (established without a test) is first probed one ``interval`` after it was
        established: establishing without a test promises no outbound call then."""
        stmt = (
            select(ConnectionHealth)
            .join(
                IntegrationConnection,
                IntegrationConnection.id == ConnectionHealth.connection_id,
            )
            .where(
                IntegrationConnection.status != ConnectionStatus.RETIRED,
                ConnectionHealth.next_probe_at.is_not(None),
                ConnectionHealth.next_probe_at <= now,
                or_(ConnectionHealth.lease_until.is_(None), ConnectionHealth.lease_until <= now),
                or_(
                    ConnectionHealth.checked_at.is_not(None),
                    IntegrationConnection.created_at <= now - interval,
                ),
            )
            .order_by(ConnectionHealth.next_probe_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=ConnectionHealth)
        )
        claims = []
        for row in (await self.session.execute(stmt)).scalars():
            row.lease_until = now + lease
            row.next_probe_at = now + lease
            claims.append(Claim(row.connection_id, row.tenant_id, now))
        await self.session.flush()
        return claims

    async def release(self, connection_id: str, next_probe_at: datetime) -> None:
        await self.session.execute(
            update(ConnectionHealth)
            .where(ConnectionHealth.connection_id == connection_id)
            .values(lease_until=None, next_probe_at=next_probe_at)
        )

    # -- the external health view -----------------------------------------------------------

    async def states(
        self,
        *,
        provider_id: str | None,
        status: HealthStatus | None,
        connection_id: str | None,
    ) -> list[tuple[ConnectionHealth, IntegrationConnection]]:
        """Every live connection's health (checked at least once), oldest connection first."""
        stmt = (
            select(ConnectionHealth, IntegrationConnection)
            .join(
                IntegrationConnection,
                IntegrationConnection.id == ConnectionHealth.connection_id,
            )
            .where(
                IntegrationConnection.status != ConnectionStatus.RETIRED,
                ConnectionHealth.checked_at.is_not(None),
            )
            .order_by(IntegrationConnection.id)
        )
        if provider_id is not None:
            stmt = stmt.where(IntegrationConnection.provider_id == provider_id)
        if status is not None:
            stmt = stmt.where(ConnectionHealth.status == status)
        if connection_id is not None:
            stmt = stmt.where(ConnectionHealth.connection_id == connection_id)
        return [(h, c) for h, c in await self.session.execute(stmt)]


@dataclass(frozen=True, slots=True)
class FailureFilter:
    category: FailureCategory | None = None
    connection_id: str | None = None
    escalation: EscalationStatus | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class FailureGroupRow:
    category: FailureCategory
    count: int
    escalated: int
    unresolved: int
    last_seen_at: datetime | None


class FailureRepository(TenantRepository[IntegrationFailure]):
    model = IntegrationFailure

    def _filtered(self, flt: FailureFilter) -> Select[IntegrationFailure]:
        stmt = self.select()
        if flt.category is not None:
            stmt = stmt.where(IntegrationFailure.category == flt.category)
        if flt.connection_id is not None:
            stmt = stmt.where(IntegrationFailure.connection_id == flt.connection_id)
        if flt.escalation is not None:
            stmt = stmt.where(IntegrationFailure.escalation_status == flt.escalation)
        if flt.occurred_from is not None:
            stmt = stmt.where(IntegrationFailure.last_seen_at >= flt.occurred_from)
        if flt.occurred_to is not None:
            stmt = stmt.where(IntegrationFailure.last_seen_at < flt.occurred_to)
        return stmt

    async def search(self, flt: FailureFilter, page: PageRequest) -> Page[IntegrationFailure]:
        return await self.page(self._filtered(flt), page)

    async def groups(self, flt: FailureFilter) -> list[FailureGroupRow]:
        """The filtered failures counted per category, most frequent first."""
        sub = self._filtered(flt).subquery()
        escalated = func.count(sub.c.id).filter(
            sub.c.escalation_status == EscalationStatus.ESCALATED.value
        )
        stmt = (
            select(
                sub.c.category,
                func.count(),
                escalated,
                func.count(sub.c.id).filter(sub.c.resolved_at.is_(None)),
                func.max(sub.c.last_seen_at),
            )
            .group_by(sub.c.category)
            .order_by(func.count().desc(), sub.c.category)
        )
        rows = (await self.session.execute(stmt)).all()
        return [
            FailureGroupRow(
                category=FailureCategory(category),
                count=int(count),
                escalated=int(esc or 0),
                unresolved=int(unresolved or 0),
                last_seen_at=last,
            )
            for category, count, esc, unresolved, last in rows
        ]

    async def open_group(self, group_key: str) -> tuple[int, datetime | None]:
        """How many unresolved failures the group has, and when its first one happened."""
        stmt = select(func.count(), func.min(IntegrationFailure.first_seen_at)).where(
            IntegrationFailure.group_key == group_key,
            IntegrationFailure.resolved_at.is_(None),
        )
        count, first = (await self.session.execute(stmt)).one()
        return int(count), first

    async def escalate_group(self, group_key: str) -> None:
        await self.session.execute(
            update(IntegrationFailure)
            .where(
                IntegrationFailure.group_key == group_key,
                IntegrationFailure.resolved_at.is_(None),
            )
            .values(escalation_status=EscalationStatus.ESCALATED)
        )

    async def resolve_connection(self, connection_id: str, now: datetime) -> int:
        """Resolve every unresolved failure of a connection; returns how many."""
        result = await self.session.execute(
            update(IntegrationFailure)
            .where(
                IntegrationFailure.connection_id == connection_id,
                IntegrationFailure.resolved_at.is_(None),
            )
            .values(escalation_status=EscalationStatus.RESOLVED, resolved_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)
