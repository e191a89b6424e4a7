"""Recording a webhook a provider sent us (the endpoint is ``rest/inbound.py``): every
request to a live connection becomes an inbound ``WebhookDelivery`` with one attempt (our
answer's status and latency) and its signature status; an accepted one emits
``InboundWebhookReceived`` (actor: the connection, kind SERVICE) carrying the payload, a
rejected one raises an ``IntegrationFailure``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.context import ActionContext, Actor
from studio_integrations.core.enums import (
    ActorKind,
    DeliveryDirection,
    DeliveryStatus,
    FailureCategory,
    SignatureStatus,
)
from studio_integrations.core.ids import new_id
from studio_integrations.core.text import find_lone_surrogate, find_nul, storable_text
from studio_integrations.core.trace import current_trace_id
from studio_integrations.domain.failures import record_failure
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.persistence.models import (
    IntegrationConnection,
    WebhookDelivery,
    WebhookDeliveryAttempt,
)
from studio_integrations.persistence.webhooks import DeliveryRepository

MAX_EVENT_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What the endpoint decided: the signature's status, whether the message is accepted,
    the HTTP status answered, and why not."""

    status: SignatureStatus
    accepted: bool
    http_status: int
    error: str | None

    @property
    def category(self) -> FailureCategory:
        return (
            FailureCategory.CLIENT_ERROR if self.http_status == 413 else FailureCategory.SIGNATURE
        )


@dataclass(frozen=True)
class InboundBody:
    """The body, decoded once: its text as stored (NUL as U+FFFD, which PostgreSQL cannot
    hold) and its JSON document when it is JSON the parser can read."""

    raw: bytes
    text: str
    doc: Any
    is_json: bool

    @classmethod
    def of(cls, raw: bytes) -> InboundBody:
        text = storable_text(raw.decode("utf-8", errors="replace"))
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
            return cls(raw, text, None, False)
        # JSON whose strings hold a lone surrogate ("\\ud800") is not text anywhere we keep
        # it (UTF-8, jsonb): the delivery keeps the body as text instead.
        if find_lone_surrogate(doc, "payload") is not None:
            return cls(raw, text, None, False)
        return cls(raw, text, doc, True)

    @property
    def event_type(self) -> str:
        value = self.doc.get("type") if isinstance(self.doc, dict) else None
        return storable_text(value[:100]) if isinstance(value, str) and value else "unknown"

    def payload_data(self) -> dict[str, Any]:
        if len(self.raw) > MAX_EVENT_PAYLOAD_BYTES:
            return {"payloadOmitted": True}
        # JSON holding U+0000 (``\\u0000``) cannot be stored as jsonb: the event keeps the text.
        if not self.is_json or find_nul(self.doc, "payload"):
            return {"payload": self.text}
        return {"payload": self.doc}


def connection_actor(connection: IntegrationConnection) -> ActionContext:
    """The context an inbound webhook acts in: the connection, as a SERVICE actor."""
    return ActionContext(
        tenant_id=connection.tenant_id,
        actor=Actor(subject=connection.id, kind=ActorKind.SERVICE, name=connection.name),
        trace_id=current_trace_id(),
    )


async def accepted_before(
    session: AsyncSession, connection: IntegrationConnection, message_id: str
) -> str | None:
    """The delivery that already accepted this message id for this connection, if any
    (providers retry; de-duplication makes that safe)."""
    existing = await DeliveryRepository(session).accepted_inbound(connection.id, message_id)
    return existing.id if existing is not None else None


async def record_inbound(
    session: AsyncSession,
    ctx: ActionContext,
    connection: IntegrationConnection,
    outcome: InboundOutcome,
    *,
    message_id: str,
    body: InboundBody,
    headers: dict[str, str],
    received_at: datetime,
    latency_ms: float,
    policy: HealthPolicy,
    suppressed: int = 0,
) -> WebhookDelivery:
    """Record one request to a live connection (``suppressed``: unsigned requests counted
    but not recorded since the last one, named in its failure's message)."""
    delivery = WebhookDelivery(
        id=new_id("WebhookDelivery"),
        tenant_id=connection.tenant_id,
        direction=DeliveryDirection.INBOUND,
        connection_id=connection.id,
        event_type=body.event_type,
        message_id=message_id,
        status=DeliveryStatus.SUCCEEDED if outcome.accepted else DeliveryStatus.FAILED,
        signature_status=outcome.status,
        payload=body.text,
        headers=headers,
        attempt_count=1,
        finished_at=received_at,
        trace_id=current_trace_id(),
    )
    session.add(delivery)
    await session.flush()
    session.add(
        WebhookDeliveryAttempt(
            id=new_id("WebhookDeliveryAttempt"),
            tenant_id=connection.tenant_id,
            delivery_id=delivery.id,
            number=1,
            attempted_at=received_at,
            http_status=outcome.http_status,
            latency_ms=latency_ms,
            error=outcome.error,
            error_category=None if outcome.accepted else outcome.category,
        )
    )
    if outcome.accepted:
        emit_event(
            session,
            ctx,
            type=EventType.INBOUND_WEBHOOK_RECEIVED,
            subject_type="WebhookDelivery",
            subject_id=delivery.id,
            data={
                "deliveryId": delivery.id,
                "connectionId": connection.id,
                "messageId": message_id,
                "eventType": body.event_type,
                **body.payload_data(),
            },
        )
    else:
        more = f" ({suppressed} more unsigned requests since the last one recorded)"
        await record_failure(
            session,
            ctx,
            policy=policy,
            category=outcome.category,
            message=f"inbound webhook rejected: {outcome.error}" + (more if suppressed else ""),
            connection_id=connection.id,
            delivery_id=delivery.id,
        )
    await session.flush()
    return delivery
