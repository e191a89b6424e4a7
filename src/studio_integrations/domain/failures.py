"""Integration failures: every failed run or delivery becomes an ``IntegrationFailure`` row
and an ``IntegrationFailureRaised`` event, in the transaction that records the run.

``record_failure`` is the one place failures are written; runs (``domain.connections``),
rotations and webhook deliveries call it. Failures of one connection and category share a
``group_key`` so the feed can group them.

Grouping and escalation: every failure is its own row (it links its originating run or
delivery); the unresolved rows of one ``group_key`` are a group, and each new row carries
the group's count so far (``occurrences``) and first time (``first_seen_at``). The failure
that brings a group to the escalation threshold (``STUDIO_FAILURE_ESCALATION_THRESHOLD``,
5) marks the whole group ESCALATED, and so is every later one of that group; its
``IntegrationFailureRaised`` carries ``escalation: ESCALATED`` and ``escalated: true``. When
the connection recovers (its health is HEALTHY again, ``domain.health``), its groups are
RESOLVED; the next failure starts a new group.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import EscalationStatus, FailureCategory
from studio_integrations.core.ids import new_id
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.persistence.health import FailureRepository
from studio_integrations.persistence.models import IntegrationFailure

MAX_MESSAGE_CHARS = 1000


def group_key(connection_id: str | None, category: FailureCategory) -> str:
    return f"{connection_id or '-'}:{category.value}"


async def record_failure(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    policy: HealthPolicy,
    category: FailureCategory,
    message: str,
    connection_id: str | None,
    run_id: str | None = None,
    delivery_id: str | None = None,
) -> IntegrationFailure:
    """Record a failure and emit ``IntegrationFailureRaised``. ``message`` must already be
    free of secrets (provider call outcomes are scrubbed by ``domain.provider_calls``)."""
    now = utcnow()
    key = group_key(connection_id, category)
    repo = FailureRepository(session)
    earlier, first_seen = await repo.open_group(key)
    occurrences = earlier + 1
    threshold = policy.escalation_threshold
    escalated = occurrences >= threshold
    if occurrences == threshold and earlier:
        await repo.escalate_group(key)
    failure = IntegrationFailure(
        id=new_id("IntegrationFailure"),
        tenant_id=ctx.tenant_id,
        connection_id=connection_id,
        category=category,
        message=message[:MAX_MESSAGE_CHARS],
        run_id=run_id,
        delivery_id=delivery_id,
        group_key=key,
        occurrences=occurrences,
        escalation_status=EscalationStatus.ESCALATED if escalated else EscalationStatus.OPEN,
        first_seen_at=first_seen or now,
        last_seen_at=now,
        trace_id=ctx.trace_id,
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
            "escalated": occurrences == threshold,
            "groupKey": key,
            "occurrences": occurrences,
            "firstSeenAt": failure.first_seen_at.isoformat(),
        },
    )
    return failure
