"""SQLAlchemy models for every entity of DESIGN §4.

Two tenancy shapes, each a mixin the session guard (``persistence.db``) recognises:
- ``TenantScoped``: ``tenant_id`` is required; rows are visible to their tenant only.
- ``SharedCatalog``: ``tenant_id`` NULL means global (visible to every tenant, writable by
  none); otherwise the row belongs to that tenant.

Mutable aggregates carry a ``version`` column used for optimistic concurrency: a write based
on a stale read fails instead of silently overwriting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import (
    ActorKind,
    ApiClientStatus,
    AuthMode,
    CircuitState,
    ConnectionStatus,
    DeliveryDirection,
    DeliveryStatus,
    EscalationStatus,
    FailureCategory,
    HealthStatus,
    ProviderStatus,
    RotationStatus,
    RotationStrategy,
    RunKind,
    RunStatus,
    SignatureStatus,
)
from studio_integrations.core.ids import new_id
from studio_integrations.persistence.types import JSONDocument, UTCDateTime, enum_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TENANT_ID_LENGTH = 64
ID_LENGTH = 40


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDocument}


def _id_column(type_name: str) -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=True, default=lambda: new_id(type_name))


def _fk(target: str, *, nullable: bool = False, ondelete: str | None = None) -> Any:
    return mapped_column(
        String(ID_LENGTH), ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
    )


class TenantScoped:
    """Rows that belong to exactly one tenant."""

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:
        return mapped_column(String(TENANT_ID_LENGTH), nullable=False, index=True)


class SharedCatalog:
    """Rows that are global (``tenant_id`` NULL) or owned by one tenant."""

    @declared_attr
    def tenant_id(cls) -> Mapped[str | None]:
        return mapped_column(String(TENANT_ID_LENGTH), nullable=True, index=True)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- Providers & API clients -------------------------------------------------------------


class Provider(SharedCatalog, Timestamps, Base):
    __tablename__ = "providers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key", name="uq_providers_tenant_key"),
        # NULLs never collide in a unique constraint, so global keys need their own index.
        Index(
            "uq_providers_global_key",
            "key",
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
    )

    id: Mapped[str] = _id_column("Provider")
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    capabilities: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    auth_modes: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    status: Mapped[ProviderStatus] = mapped_column(
        enum_column(ProviderStatus), default=ProviderStatus.ACTIVE
    )
    base_url: Mapped[str] = mapped_column(String(2048))
    verification: Mapped[dict[str, Any]] = mapped_column(default=dict)
    configuration_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # How each auth mode is applied (``domain.provider_calls.AuthScheme.from_mapping``);
    # NULL means the defaults.
    auth_scheme: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    latency_threshold_ms: Mapped[int] = mapped_column(Integer, default=2000)
    documentation_url: Mapped[str | None] = mapped_column(String(2048))
    catalogue_version: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class ExternalApiClient(SharedCatalog, Timestamps, Base):
    __tablename__ = "external_api_clients"
    __table_args__ = (
        UniqueConstraint("provider_id", "assembly", "version", name="uq_api_clients_version"),
    )

    id: Mapped[str] = _id_column("ExternalApiClient")
    provider_id: Mapped[str] = _fk("providers.id", ondelete="CASCADE")
    assembly: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    # SemVer precedence as a string that sorts like it (``domain.semver.SemVer.sort_key``),
    # so listings order and paginate by version in SQL.
    version_sort_key: Mapped[str] = mapped_column(String(300))
    capabilities: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    status: Mapped[ApiClientStatus] = mapped_column(
        enum_column(ApiClientStatus), default=ApiClientStatus.PREVIEW
    )


# --- Credentials -------------------------------------------------------------------------


class Credential(TenantScoped, Timestamps, Base):
    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key_vault_ref", name="uq_credentials_tenant_ref"),
    )

    id: Mapped[str] = _id_column("Credential")
    name: Mapped[str | None] = mapped_column(String(200))
    key_vault_ref: Mapped[str] = mapped_column(String(2048))
    auth_mode: Mapped[AuthMode] = mapped_column(enum_column(AuthMode))
    current_version: Mapped[str] = mapped_column(String(100))
    last_rotated_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    rotation_strategy: Mapped[RotationStrategy] = mapped_column(enum_column(RotationStrategy))
    cadence_days: Mapped[int | None] = mapped_column(Integer)
    expiry_warning_days: Mapped[int | None] = mapped_column(Integer)
    expiry_warned_version: Mapped[str | None] = mapped_column(String(100))
    # Provider ids and host names its secret may be sent to (``CredentialAudience``).
    audience: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class CredentialRotation(TenantScoped, Base):
    __tablename__ = "credential_rotations"
    __table_args__ = (Index("ix_credential_rotations_status", "status", "lease_until"),)

    id: Mapped[str] = _id_column("CredentialRotation")
    credential_id: Mapped[str] = _fk("credentials.id", ondelete="CASCADE")
    status: Mapped[RotationStatus] = mapped_column(
        enum_column(RotationStatus), default=RotationStatus.PENDING
    )
    previous_version: Mapped[str | None] = mapped_column(String(100))
    new_version: Mapped[str | None] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]


# --- Connections, runs, health ----------------------------------------------------------


class IntegrationConnection(TenantScoped, Timestamps, Base):
    __tablename__ = "integration_connections"
    __table_args__ = (Index("ix_integration_connections_tenant_status", "tenant_id", "status"),)

    id: Mapped[str] = _id_column("IntegrationConnection")
    project_id: Mapped[str] = mapped_column(String(100), index=True)
    provider_id: Mapped[str] = _fk("providers.id")
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[ConnectionStatus] = mapped_column(
        enum_column(ConnectionStatus), default=ConnectionStatus.ACTIVE
    )
    auth_mode: Mapped[AuthMode] = mapped_column(enum_column(AuthMode))
    credential_id: Mapped[str | None] = _fk("credentials.id", nullable=True)
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inbound_signing_secret_ref: Mapped[str | None] = mapped_column(String(2048))
    created_by: Mapped[str | None] = mapped_column(String(200))
    retired_at: Mapped[datetime | None]
    retired_reason: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class IntegrationRun(TenantScoped, Base):
    __tablename__ = "integration_runs"

    id: Mapped[str] = _id_column("IntegrationRun")
    connection_id: Mapped[str] = _fk("integration_connections.id", ondelete="CASCADE")
    rotation_id: Mapped[str | None] = _fk("credential_rotations.id", nullable=True)
    kind: Mapped[RunKind] = mapped_column(enum_column(RunKind))
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus), default=RunStatus.PENDING)
    credential_version: Mapped[str | None] = mapped_column(String(100))
    external_ref: Mapped[str | None] = mapped_column(String(500))
    # The final attempt's HTTP status and latency (the run's headline figures).
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None]
    error_category: Mapped[FailureCategory | None] = mapped_column(enum_column(FailureCategory))
    error_message: Mapped[str | None] = mapped_column(Text)
    triggered_by: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The W3C trace id of the work that made the run (the request's, or a worker's own).
    trace_id: Mapped[str | None] = mapped_column(String(32))


class RunAttempt(TenantScoped, Base):
    __tablename__ = "run_attempts"
    __table_args__ = (UniqueConstraint("run_id", "number", name="uq_run_attempts_number"),)

    id: Mapped[str] = _id_column("RunAttempt")
    run_id: Mapped[str] = _fk("integration_runs.id", ondelete="CASCADE")
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    latency_ms: Mapped[float | None]
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_category: Mapped[FailureCategory | None] = mapped_column(enum_column(FailureCategory))
    error_message: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(String(500))
    address: Mapped[str | None] = mapped_column(String(100))
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class ConnectionHealth(TenantScoped, Base):
    """Current health and circuit state of one connection; also the prober's work lease."""

    __tablename__ = "connection_health"
    __table_args__ = (Index("ix_connection_health_due", "next_probe_at"),)

    connection_id: Mapped[str] = mapped_column(
        String(ID_LENGTH),
        ForeignKey("integration_connections.id", ondelete="CASCADE"),
        primary_key=True,
    )
    status: Mapped[HealthStatus] = mapped_column(
        enum_column(HealthStatus), default=HealthStatus.HEALTHY
    )
    circuit_state: Mapped[CircuitState] = mapped_column(
        enum_column(CircuitState), default=CircuitState.CLOSED
    )
    latency_p50_ms: Mapped[float | None]
    latency_p95_ms: Mapped[float | None]
    error_rate: Mapped[float] = mapped_column(default=0.0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    circuit_opened_at: Mapped[datetime | None]
    checked_at: Mapped[datetime | None]
    next_probe_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]


class HealthSnapshot(TenantScoped, Base):
    __tablename__ = "health_snapshots"
    __table_args__ = (Index("ix_health_snapshots_timeline", "connection_id", "checked_at"),)

    id: Mapped[str] = _id_column("HealthSnapshot")
    connection_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("integration_connections.id", ondelete="CASCADE")
    )
    status: Mapped[HealthStatus] = mapped_column(enum_column(HealthStatus))
    circuit_state: Mapped[CircuitState] = mapped_column(enum_column(CircuitState))
    latency_p50_ms: Mapped[float | None]
    latency_p95_ms: Mapped[float | None]
    error_rate: Mapped[float] = mapped_column(default=0.0)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntegrationFailure(TenantScoped, Base):
    __tablename__ = "integration_failures"
    __table_args__ = (Index("ix_integration_failures_group", "tenant_id", "group_key"),)

    id: Mapped[str] = _id_column("IntegrationFailure")
    connection_id: Mapped[str | None] = _fk(
        "integration_connections.id", nullable=True, ondelete="CASCADE"
    )
    category: Mapped[FailureCategory] = mapped_column(enum_column(FailureCategory))
    message: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = _fk("integration_runs.id", nullable=True)
    delivery_id: Mapped[str | None] = _fk("webhook_deliveries.id", nullable=True)
    group_key: Mapped[str] = mapped_column(String(200))
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    escalation_status: Mapped[EscalationStatus] = mapped_column(
        enum_column(EscalationStatus), default=EscalationStatus.OPEN
    )
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    # The trace of the latest occurrence.
    trace_id: Mapped[str | None] = mapped_column(String(32))


# --- Webhooks ----------------------------------------------------------------------------


class WebhookSubscription(TenantScoped, Timestamps, Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = _id_column("WebhookSubscription")
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    endpoint_url: Mapped[str] = mapped_column(String(2048))
    signing_secret_ref: Mapped[str] = mapped_column(String(2048))
    signing_secret_version: Mapped[str | None] = mapped_column(String(100))
    previous_signing_secret_version: Mapped[str | None] = mapped_column(String(100))
    previous_secret_valid_until: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    retry_schedule: Mapped[list[int] | None] = mapped_column(JSONDocument)
    # Deliveries sent per second at most, across every replica (None: unlimited).
    max_deliveries_per_second: Mapped[int | None] = mapped_column(Integer)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class WebhookDelivery(TenantScoped, Timestamps, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_message", "tenant_id", "direction", "message_id"),
        # The fan-out of one event to one subscription happens once (replays are new rows).
        Index(
            "uq_webhook_deliveries_fanout",
            "subscription_id",
            "event_id",
            unique=True,
            sqlite_where=text("replay_of_id IS NULL AND event_id IS NOT NULL"),
            postgresql_where=text("replay_of_id IS NULL AND event_id IS NOT NULL"),
        ),
        # An inbound message id is accepted once per connection (de-duplication).
        Index(
            "uq_webhook_deliveries_inbound_accepted",
            "connection_id",
            "message_id",
            unique=True,
            sqlite_where=text("direction = 'INBOUND' AND status = 'SUCCEEDED'"),
            postgresql_where=text("direction = 'INBOUND' AND status = 'SUCCEEDED'"),
        ),
    )

    id: Mapped[str] = _id_column("WebhookDelivery")
    direction: Mapped[DeliveryDirection] = mapped_column(enum_column(DeliveryDirection))
    subscription_id: Mapped[str | None] = _fk(
        "webhook_subscriptions.id", nullable=True, ondelete="CASCADE"
    )
    connection_id: Mapped[str | None] = _fk(
        "integration_connections.id", nullable=True, ondelete="CASCADE"
    )
    event_type: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    message_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    signature_status: Mapped[SignatureStatus] = mapped_column(
        enum_column(SignatureStatus), default=SignatureStatus.NOT_APPLICABLE
    )
    payload: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    replay_of_id: Mapped[str | None] = _fk("webhook_deliveries.id", nullable=True)
    finished_at: Mapped[datetime | None]
    # Outbound: the trace of the event it carries (its sends join that trace); inbound: the
    # receiving request's.
    trace_id: Mapped[str | None] = mapped_column(String(32))


class WebhookDeliveryAttempt(TenantScoped, Base):
    """One HTTP exchange of a delivery; outbound attempts are the egress audit."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[str] = _id_column("WebhookDeliveryAttempt")
    delivery_id: Mapped[str] = _fk("webhook_deliveries.id", ondelete="CASCADE")
    subscription_id: Mapped[str | None] = _fk(
        "webhook_subscriptions.id", nullable=True, ondelete="CASCADE"
    )
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    url: Mapped[str | None] = mapped_column(String(2048))
    resolved_address: Mapped[str | None] = mapped_column(String(100))
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None]
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_category: Mapped[FailureCategory | None] = mapped_column(enum_column(FailureCategory))


# --- Audit and outbox --------------------------------------------------------------------


class AuditEvent(TenantScoped, Base):
    """The canonical event envelope (DESIGN §6), kept forever per tenant."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_type", "tenant_id", "type", "id"),
        Index("ix_audit_events_tenant_subject", "tenant_id", "subject_id", "id"),
        Index("ix_audit_events_tenant_occurred", "tenant_id", "occurred_at"),
        Index("ix_audit_events_sequence", "sequence", unique=True),
    )

    id: Mapped[str] = _id_column("AuditEvent")
    type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_subject: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[ActorKind] = mapped_column(enum_column(ActorKind))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    subject_type: Mapped[str] = mapped_column(String(100))
    subject_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Commit-order position, assigned by the outbox relay (``workers.outbox_relay``): the
    # cursor of resumable subscriptions. None until the relay claimed the event.
    sequence: Mapped[int | None] = mapped_column(BigInteger)


class OutboxMessage(TenantScoped, Base):
    """An event waiting to be published to the bus; written in the change's transaction."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index(
            "ix_outbox_messages_unpublished",
            "id",
            sqlite_where=text("published_at IS NULL"),
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[str] = _id_column("OutboxMessage")
    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None]  # claimed by a relay publishing it until then


# --- Local vault -------------------------------------------------------------------------


class VaultSecretVersion(Base):
    """One version of a secret in the embedded ``local://vault`` (AES-GCM ciphertext only).

    Not tenant-scoped: like Azure Key Vault it is infrastructure, reached only through
    ``vault/`` by reference.
    """

    __tablename__ = "vault_secret_versions"
    __table_args__ = (Index("ix_vault_secret_versions_name", "name", "created_at"),)

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(127))
    nonce: Mapped[bytes]
    ciphertext: Mapped[bytes]
    content_type: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(default=True)
    not_before: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- Trusted documents -------------------------------------------------------------------


class TrustedDocument(Base):
    """A GraphQL document known by its SHA-256 (Apollo APQ / trusted documents).

    Not tenant-scoped: a document is query text, not data. ``registered`` marks documents put
    in by an operator (``studio-integrations documents register``), the only ones the
    allowlist mode accepts; ``apq`` ones were learned from clients.
    """

    __tablename__ = "trusted_documents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(200))
    registered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "AuditEvent",
    "Base",
    "ConnectionHealth",
    "Credential",
    "CredentialRotation",
    "ExternalApiClient",
    "HealthSnapshot",
    "IntegrationConnection",
    "IntegrationFailure",
    "IntegrationRun",
    "OutboxMessage",
    "Provider",
    "RunAttempt",
    "SharedCatalog",
    "TenantScoped",
    "TrustedDocument",
    "VaultSecretVersion",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookSubscription",
]


# --- Idempotency keys --------------------------------------------------------------------


class IdempotencyKey(TenantScoped, Base):
    """The first answer to a mutation sent with an ``Idempotency-Key`` header, kept 24 h per
    tenant, subject and key (``rest.idempotency``). No response yet: the first is running."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "subject", "key"),)

    subject: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(200))
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
