"""The canonical event envelope (DESIGN §6) and the event type names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from studio_integrations.core.context import Actor
from studio_integrations.core.enums import ActorKind


class EventType(StrEnum):
    INTEGRATION_CONNECTION_ESTABLISHED = "IntegrationConnectionEstablished"
    INTEGRATION_CONNECTION_UPDATED = "IntegrationConnectionUpdated"
    INTEGRATION_CONNECTION_TESTED = "IntegrationConnectionTested"
    INTEGRATION_CONNECTION_RETIRED = "IntegrationConnectionRetired"
    CONNECTION_HEALTH_CHANGED = "ConnectionHealthChanged"
    PROVIDER_REGISTERED = "ProviderRegistered"
    EXTERNAL_API_CLIENT_REGISTERED = "ExternalApiClientRegistered"
    CREDENTIAL_REGISTERED = "CredentialRegistered"
    CREDENTIAL_ROTATED = "CredentialRotated"
    CREDENTIAL_ROTATION_FAILED = "CredentialRotationFailed"
    CREDENTIAL_ROTATION_POLICY_CHANGED = "CredentialRotationPolicyChanged"
    CREDENTIAL_EXPIRING = "CredentialExpiring"
    WEBHOOK_SUBSCRIPTION_CREATED = "WebhookSubscriptionCreated"
    WEBHOOK_SUBSCRIPTION_UPDATED = "WebhookSubscriptionUpdated"
    WEBHOOK_SUBSCRIPTION_DISABLED = "WebhookSubscriptionDisabled"
    WEBHOOK_SIGNING_SECRET_ROTATED = "WebhookSigningSecretRotated"
    WEBHOOK_DELIVERY_REPLAYED = "WebhookDeliveryReplayed"
    INBOUND_WEBHOOK_RECEIVED = "InboundWebhookReceived"
    INTEGRATION_FAILURE_RAISED = "IntegrationFailureRaised"
    # Round two: sendTestWebhook's audit record (never delivered by webhook itself).
    WEBHOOK_TEST_SENT = "WebhookTestSent"


@dataclass(frozen=True, slots=True)
class EventSubject:
    type: str
    id: str


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    id: str
    type: str
    tenant_id: str
    occurred_at: datetime
    actor: Actor
    trace_id: str
    subject: EventSubject
    data: dict[str, Any] = field(default_factory=dict)
    # Commit-order position (``audit_events.sequence``), on the bus only: set by the relay.
    sequence: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "tenantId": self.tenant_id,
            "occurredAt": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "actor": {
                "subject": self.actor.subject,
                "kind": self.actor.kind.value,
                "name": self.actor.name,
            },
            "traceId": self.trace_id,
            "subject": {"type": self.subject.type, "id": self.subject.id},
            "data": self.data,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    def to_bus_json(self) -> str:
        """The bus message: the envelope and its commit-order ``sequence``."""
        return json.dumps(
            {**self.to_dict(), "sequence": self.sequence}, separators=(",", ":"), sort_keys=True
        )

    @classmethod
    def from_json(cls, raw: str) -> EventEnvelope:
        doc = json.loads(raw)
        return cls(
            id=doc["id"],
            type=doc["type"],
            tenant_id=doc["tenantId"],
            occurred_at=datetime.fromisoformat(doc["occurredAt"].replace("Z", "+00:00")),
            actor=Actor(
                subject=doc["actor"]["subject"],
                kind=ActorKind(doc["actor"]["kind"]),
                name=doc["actor"].get("name"),
            ),
            trace_id=doc["traceId"],
            subject=EventSubject(type=doc["subject"]["type"], id=doc["subject"]["id"]),
            data=doc.get("data") or {},
            sequence=doc.get("sequence"),
        )
