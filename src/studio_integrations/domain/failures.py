"""Integration failures: every failed run or delivery becomes an ``IntegrationFailure`` row
and an ``IntegrationFailureRaised`` event, in the transaction that records the run.

``raise_failure`` is the one place failures are written; runs (``domain.connections``),
rotations and webhook deliveries call it. Failures of one connection and category share a
``group_key`` so the feed can group them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.domain.context import ActionContext
from studio_integrations.domain.enums import EscalationStatus, FailureCategory
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.ids import new_id
from studio_integrations.persistence.models import IntegrationFailure
from studio_integrations.persistence.types import utcnow

MAX_MESSAGE_CHARS = 1000


def group_key(connection_id: str | None, category: FailureCategory) -> str:
    return f"{connection_id or '-'}:{category.value}"


async def raise_failure(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    category: FailureCategory,
    message: str,
    connection_id: str | None,
    run_id: str | None = None,
    delivery_id: str | None = None,
) -> IntegrationFailure:
    """Record a failure and emit ``IntegrationFailureRaised``. ``message`` must already be
    free of secrets (provider call outcomes are scrubbed by ``domain.provider_calls``)."""
    now = utcnow()
    failure = IntegrationFailure(
        id=new_id("IntegrationFailure"),
        tenant_id=ctx.tenant_id,
        connection_id=connection_id,
        category=category,
        message=message[:MAX_MESSAGE_CHARS],
        run_id=run_id,
        delivery_id=delivery_id,
        group_key=group_key(connection_id, category),
        escalation_status=EscalationStatus.OPEN,
        first_seen_at=now,
        last_seen_at=now,
    )
    session.add(failure)
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.INTEGRATION_FAILURE_RAISED,
        subject_type="IntegrationFailure",
        subject_id=failure.id,
        data={
            "category": category.value,
            "message": failure.message,
            "connectionId": connection_id,
            "runId": run_id,
            "deliveryId": delivery_id,
            "escalation": failure.escalation_status.value,
        },
    )
    return failure
