"""Webhook repositories: subscriptions, deliveries (both directions) and their attempts.

Inside the tenant like every repository (the session's guard adds the tenant criterion);
the dispatcher's queue queries run in a system-scope session and live in
``workers.webhook_dispatcher``. Batch methods take many ids and answer with one statement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from studio_integrations.core.enums import DeliveryDirection, DeliveryStatus, SignatureStatus
from studio_integrations.persistence.models import (
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    event_type: str | None = None
    active: bool | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    direction: DeliveryDirection | None = None
    status: DeliveryStatus | None = None
    event_type: str | None = None
    subscription_id: str | None = None
    connection_id: str | None = None
    signature_status: SignatureStatus | None = None
    from_: datetime | None = None
    to: datetime | None = None
    search: str | None = None


class SubscriptionRepository(TenantRepository[WebhookSubscription]):
    model = WebhookSubscription

    async def search(self, flt: SubscriptionFilter, page: PageRequest) -> Page[WebhookSubscription]:
        stmt = self.select()
        if flt.event_type is not None:
            stmt = stmt.where(WebhookSubscription.event_type == flt.event_type)
        if flt.active is not None:
            stmt = stmt.where(WebhookSubscription.active.is_(flt.active))
        if flt.search:
            term = flt.search.strip().lower()
            stmt = stmt.where(
                or_(
                    func.lower(WebhookSubscription.endpoint_url).contains(term, autoescape=True),
                    func.lower(WebhookSubscription.description).contains(term, autoescape=True),
                )
            )
        return await self.page(stmt, page)

    async def matching_any(
        self, tenant_ids: set[str], event_types: set[str]
    ) -> list[WebhookSubscription]:
        """Active subscriptions of any of ``tenant_ids`` for any of ``event_types`` (or
        ``*``), by id, in one statement; explicit about the tenants because the outbox
        relay's session is a system-scope one."""
        stmt = self.select().where(
            WebhookSubscription.tenant_id.in_(tenant_ids),
            WebhookSubscription.active.is_(True),
            WebhookSubscription.event_type.in_({*event_types, "*"}),
        )
        return list((await self.session.execute(stmt.order_by(WebhookSubscription.id))).scalars())


class DeliveryRepository(TenantRepository[WebhookDelivery]):
    model = WebhookDelivery

    async def search(self, flt: DeliveryFilter, page: PageRequest) -> Page[WebhookDelivery]:
        """Newest first (ids are time-sortable)."""
        stmt = self.select()
        if flt.direction is not None:
            stmt = stmt.where(WebhookDelivery.direction == flt.direction)
        if flt.status is not None:
            stmt = stmt.where(WebhookDelivery.status == flt.status)
        if flt.event_type is not None:
            stmt = stmt.where(WebhookDelivery.event_type == flt.event_type)
        if flt.subscription_id is not None:
            stmt = stmt.where(WebhookDelivery.subscription_id == flt.subscription_id)
        if flt.connection_id is not None:
            stmt = stmt.where(WebhookDelivery.connection_id == flt.connection_id)
        if flt.signature_status is not None:
            stmt = stmt.where(WebhookDelivery.signature_status == flt.signature_status)
        if flt.from_ is not None:
            stmt = stmt.where(WebhookDelivery.created_at >= flt.from_)
        if flt.to is not None:
            stmt = stmt.where(WebhookDelivery.created_at < flt.to)
        if flt.search:
            term = flt.search.strip()
            lowered = term.lower()
            stmt = stmt.where(
                or_(
                    WebhookDelivery.id == term,
                    WebhookDelivery.message_id == term,
                    WebhookDelivery.event_id == term,
                    func.lower(WebhookDelivery.event_type).contains(lowered, autoescape=True),
                    func.lower(WebhookDelivery.payload).contains(lowered, autoescape=True),
                )
            )
        return await self.page(stmt, page)

    async def accepted_inbound(self, connection_id: str, message_id: str) -> WebhookDelivery | None:
        stmt = self.select().where(
            WebhookDelivery.direction == DeliveryDirection.INBOUND,
            WebhookDelivery.connection_id == connection_id,
            WebhookDelivery.message_id == message_id,
            WebhookDelivery.status == DeliveryStatus.SUCCEEDED,
        )
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def failed_between(
        self, subscription_id: str, since: datetime, until: datetime, *, limit: int
    ) -> list[WebhookDelivery]:
        """FAILED outbound deliveries of a subscription created in ``[since, until)``."""
        stmt = (
            self.select()
            .where(
                WebhookDelivery.subscription_id == subscription_id,
                WebhookDelivery.direction == DeliveryDirection.OUTBOUND,
                WebhookDelivery.status == DeliveryStatus.FAILED,
                WebhookDelivery.created_at >= since,
                WebhookDelivery.created_at < until,
            )
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def fanned_out(
        self, event_ids: Sequence[str], subscription_ids: set[str]
    ) -> set[tuple[str, str]]:
        """``(event id, subscription id)`` pairs among these that already have their
        (original) delivery. One statement, on the fan-out's unique index (subscription,
        event): not a scan of the tenant's delivery history."""
        stmt = select(WebhookDelivery.event_id, WebhookDelivery.subscription_id).where(
            WebhookDelivery.subscription_id.in_(subscription_ids),
            WebhookDelivery.event_id.in_(event_ids),
            WebhookDelivery.replay_of_id.is_(None),
        )
        return {(e, s) for e, s in (await self.session.execute(stmt)).all() if e and s}


class AttemptRepository(TenantRepository[WebhookDeliveryAttempt]):
    model = WebhookDeliveryAttempt

    async def for_deliveries(
        self, delivery_ids: Sequence[str]
    ) -> dict[str, list[WebhookDeliveryAttempt]]:
        found: dict[str, list[WebhookDeliveryAttempt]] = defaultdict(list)
        if not delivery_ids:
            return found
        stmt = (
            self.select()
            .where(WebhookDeliveryAttempt.delivery_id.in_(set(delivery_ids)))
            .order_by(WebhookDeliveryAttempt.delivery_id, WebhookDeliveryAttempt.number)
        )
        for row in (await self.session.execute(stmt)).scalars():
            found[row.delivery_id].append(row)
        return found

    async def egress_page(
        self, subscription_id: str, page: PageRequest
    ) -> Page[WebhookDeliveryAttempt]:
        """Every outbound request made for a subscription, newest first."""
        stmt = self.select().where(WebhookDeliveryAttempt.subscription_id == subscription_id)
        return await self.page(stmt, page)

    async def next_number(self, delivery_id: str) -> int:
        stmt = select(func.max(WebhookDeliveryAttempt.number)).where(
            WebhookDeliveryAttempt.delivery_id == delivery_id
        )
        current = (await self.session.execute(stmt)).scalar()
        return int(current or 0) + 1
