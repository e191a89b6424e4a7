"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 03:42:15.960807
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from studio_integrations.persistence.types import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("actor_subject", sa.String(length=200), nullable=False),
        sa.Column(
            "actor_kind",
            sa.Enum("USER", "SERVICE", "SYSTEM", name="actorkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=100), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_audit_events_tenant_occurred", ["tenant_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_tenant_subject", ["tenant_id", "subject_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_tenant_type", ["tenant_id", "type", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_events_trace_id"), ["trace_id"], unique=False)

    op.create_table(
        "credentials",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("key_vault_ref", sa.String(length=2048), nullable=False),
        sa.Column(
            "auth_mode",
            sa.Enum(
                "API_KEY",
                "BEARER_TOKEN",
                "BASIC",
                "OAUTH2_CLIENT_CREDENTIALS",
                name="authmode",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("current_version", sa.String(length=100), nullable=False),
        sa.Column("last_rotated_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column(
            "rotation_strategy",
            sa.Enum("GENERATED", "EXTERNAL", name="rotationstrategy", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("cadence_days", sa.Integer(), nullable=True),
        sa.Column("expiry_warning_days", sa.Integer(), nullable=True),
        sa.Column("expiry_warned_version", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("tenant_id", "key_vault_ref", name="uq_credentials_tenant_ref"),
    )
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credentials_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_messages_event_id")),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "ix_outbox_messages_unpublished",
            ["id"],
            unique=False,
            sqlite_where=sa.text("published_at IS NULL"),
            postgresql_where=sa.text("published_at IS NULL"),
        )

    op.create_table(
        "providers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "capabilities",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "auth_modes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("ACTIVE", "DEPRECATED", name="providerstatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("base_url", sa.String(length=2048), nullable=False),
        sa.Column(
            "verification",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "configuration_schema",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("latency_threshold_ms", sa.Integer(), nullable=False),
        sa.Column("documentation_url", sa.String(length=2048), nullable=True),
        sa.Column("catalogue_version", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
        sa.UniqueConstraint("tenant_id", "key", name="uq_providers_tenant_key"),
    )
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_providers_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "uq_providers_global_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text("tenant_id IS NULL"),
            postgresql_where=sa.text("tenant_id IS NULL"),
        )

    op.create_table(
        "vault_secret_versions",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=127), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_vault_secret_versions")),
    )
    with op.batch_alter_table("vault_secret_versions", schema=None) as batch_op:
        batch_op.create_index("ix_vault_secret_versions_name", ["name", "created_at"], unique=False)

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2048), nullable=False),
        sa.Column("signing_secret_ref", sa.String(length=2048), nullable=False),
        sa.Column("signing_secret_version", sa.String(length=100), nullable=True),
        sa.Column("previous_signing_secret_version", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_valid_until", UTCDateTime(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "retry_schedule",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_subscriptions_event_type"), ["event_type"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_subscriptions_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "credential_rotations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("credential_id", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "VERIFYING",
                "PROMOTED",
                "FAILED",
                name="rotationstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("previous_version", sa.String(length=100), nullable=True),
        sa.Column("new_version", sa.String(length=100), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_credential_rotations_credential_id_credentials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_rotations")),
    )
    with op.batch_alter_table("credential_rotations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_rotations_credential_id"), ["credential_id"], unique=False
        )
        batch_op.create_index(
            "ix_credential_rotations_status", ["status", "lease_until"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credential_rotations_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "external_api_clients",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("assembly", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column(
            "capabilities",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "IMPLEMENTED",
                "PREVIEW",
                "DEPRECATED",
                name="apiclientstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_external_api_clients_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_api_clients")),
        sa.UniqueConstraint("provider_id", "assembly", "version", name="uq_api_clients_version"),
    )
    with op.batch_alter_table("external_api_clients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_external_api_clients_provider_id"), ["provider_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_external_api_clients_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "integration_connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=100), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "ACTIVE",
                "DEGRADED",
                "RETIRED",
                name="connectionstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "auth_mode",
            sa.Enum(
                "API_KEY",
                "BEARER_TOKEN",
                "BASIC",
                "OAUTH2_CLIENT_CREDENTIALS",
                name="authmode",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("credential_id", sa.String(length=40), nullable=True),
        sa.Column(
            "configuration",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("inbound_signing_secret_ref", sa.String(length=2048), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_integration_connections_credential_id_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_integration_connections_provider_id_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_connections")),
    )
    with op.batch_alter_table("integration_connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_integration_connections_credential_id"), ["credential_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_connections_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_connections_provider_id"), ["provider_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_connections_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "ix_integration_connections_tenant_status", ["tenant_id", "status"], unique=False
        )

    op.create_table(
        "connection_health",
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "HEALTHY",
                "DEGRADED",
                "UNHEALTHY",
                name="healthstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "circuit_state",
            sa.Enum(
                "CLOSED", "OPEN", "HALF_OPEN", name="circuitstate", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("latency_p50_ms", sa.Double(), nullable=True),
        sa.Column("latency_p95_ms", sa.Double(), nullable=True),
        sa.Column("error_rate", sa.Double(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("circuit_opened_at", UTCDateTime(), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.Column("next_probe_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["integration_connections.id"],
            name=op.f("fk_connection_health_connection_id_integration_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_connection_health")),
    )
    with op.batch_alter_table("connection_health", schema=None) as batch_op:
        batch_op.create_index("ix_connection_health_due", ["next_probe_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_connection_health_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "health_snapshots",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "HEALTHY",
                "DEGRADED",
                "UNHEALTHY",
                name="healthstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "circuit_state",
            sa.Enum(
                "CLOSED", "OPEN", "HALF_OPEN", name="circuitstate", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("latency_p50_ms", sa.Double(), nullable=True),
        sa.Column("latency_p95_ms", sa.Double(), nullable=True),
        sa.Column("error_rate", sa.Double(), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["integration_connections.id"],
            name=op.f("fk_health_snapshots_connection_id_integration_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_snapshots")),
    )
    with op.batch_alter_table("health_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_snapshots_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "ix_health_snapshots_timeline", ["connection_id", "checked_at"], unique=False
        )

    op.create_table(
        "integration_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("rotation_id", sa.String(length=40), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "TEST",
                "PROBE",
                "VERIFICATION",
                "OPERATION",
                name="runkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "RUNNING",
                "SUCCEEDED",
                "FAILED",
                name="runstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("credential_version", sa.String(length=100), nullable=True),
        sa.Column("external_ref", sa.String(length=500), nullable=True),
        sa.Column(
            "error_category",
            sa.Enum(
                "AUTHENTICATION",
                "AUTHORIZATION",
                "RATE_LIMITED",
                "TIMEOUT",
                "NETWORK",
                "SERVER_ERROR",
                "CLIENT_ERROR",
                "CONFIGURATION",
                "SIGNATURE",
                "UNKNOWN",
                name="failurecategory",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("triggered_by", sa.String(length=200), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["integration_connections.id"],
            name=op.f("fk_integration_runs_connection_id_integration_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rotation_id"],
            ["credential_rotations.id"],
            name=op.f("fk_integration_runs_rotation_id_credential_rotations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_runs")),
    )
    with op.batch_alter_table("integration_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_integration_runs_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_runs_rotation_id"), ["rotation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_runs_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column(
            "direction",
            sa.Enum("INBOUND", "OUTBOUND", name="deliverydirection", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "SUCCEEDED",
                "RETRYING",
                "FAILED",
                name="deliverystatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "signature_status",
            sa.Enum(
                "VALID",
                "INVALID",
                "MISSING",
                "NOT_APPLICABLE",
                name="signaturestatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("replay_of_id", sa.String(length=40), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["integration_connections.id"],
            name=op.f("fk_webhook_deliveries_connection_id_integration_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["replay_of_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_deliveries_replay_of_id_webhook_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_message", ["tenant_id", "direction", "message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_replay_of_id"), ["replay_of_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_subscription_id"), ["subscription_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "integration_failures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column(
            "category",
            sa.Enum(
                "AUTHENTICATION",
                "AUTHORIZATION",
                "RATE_LIMITED",
                "TIMEOUT",
                "NETWORK",
                "SERVER_ERROR",
                "CLIENT_ERROR",
                "CONFIGURATION",
                "SIGNATURE",
                "UNKNOWN",
                name="failurecategory",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("delivery_id", sa.String(length=40), nullable=True),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column(
            "escalation_status",
            sa.Enum(
                "OPEN",
                "ESCALATED",
                "RESOLVED",
                name="escalationstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["integration_connections.id"],
            name=op.f("fk_integration_failures_connection_id_integration_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_integration_failures_delivery_id_webhook_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["integration_runs.id"],
            name=op.f("fk_integration_failures_run_id_integration_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_failures")),
    )
    with op.batch_alter_table("integration_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_integration_failures_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_failures_delivery_id"), ["delivery_id"], unique=False
        )
        batch_op.create_index(
            "ix_integration_failures_group", ["tenant_id", "group_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_failures_run_id"), ["run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integration_failures_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "run_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column(
            "error_category",
            sa.Enum(
                "AUTHENTICATION",
                "AUTHORIZATION",
                "RATE_LIMITED",
                "TIMEOUT",
                "NETWORK",
                "SERVER_ERROR",
                "CLIENT_ERROR",
                "CONFIGURATION",
                "SIGNATURE",
                "UNKNOWN",
                name="failurecategory",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["integration_runs.id"],
            name=op.f("fk_run_attempts_run_id_integration_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_attempts")),
        sa.UniqueConstraint("run_id", "number", name="uq_run_attempts_number"),
    )
    with op.batch_alter_table("run_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_attempts_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_run_attempts_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "webhook_delivery_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("attempted_at", UTCDateTime(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("resolved_address", sa.String(length=100), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_delivery_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_delivery_attempts_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery_attempts")),
    )
    with op.batch_alter_table("webhook_delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_attempts_subscription_id"),
            ["subscription_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_attempts_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_attempts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_attempts_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_attempts_delivery_id"))

    op.drop_table("webhook_delivery_attempts")
    with op.batch_alter_table("run_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_attempts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_run_attempts_run_id"))

    op.drop_table("run_attempts")
    with op.batch_alter_table("integration_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integration_failures_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_integration_failures_run_id"))
        batch_op.drop_index("ix_integration_failures_group")
        batch_op.drop_index(batch_op.f("ix_integration_failures_delivery_id"))
        batch_op.drop_index(batch_op.f("ix_integration_failures_connection_id"))

    op.drop_table("integration_failures")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_replay_of_id"))
        batch_op.drop_index("ix_webhook_deliveries_message")
        batch_op.drop_index("ix_webhook_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_connection_id"))

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("integration_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integration_runs_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_integration_runs_rotation_id"))
        batch_op.drop_index(batch_op.f("ix_integration_runs_connection_id"))

    op.drop_table("integration_runs")
    with op.batch_alter_table("health_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_health_snapshots_timeline")
        batch_op.drop_index(batch_op.f("ix_health_snapshots_tenant_id"))

    op.drop_table("health_snapshots")
    with op.batch_alter_table("connection_health", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connection_health_tenant_id"))
        batch_op.drop_index("ix_connection_health_due")

    op.drop_table("connection_health")
    with op.batch_alter_table("integration_connections", schema=None) as batch_op:
        batch_op.drop_index("ix_integration_connections_tenant_status")
        batch_op.drop_index(batch_op.f("ix_integration_connections_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_integration_connections_provider_id"))
        batch_op.drop_index(batch_op.f("ix_integration_connections_project_id"))
        batch_op.drop_index(batch_op.f("ix_integration_connections_credential_id"))

    op.drop_table("integration_connections")
    with op.batch_alter_table("external_api_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_external_api_clients_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_external_api_clients_provider_id"))

    op.drop_table("external_api_clients")
    with op.batch_alter_table("credential_rotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_rotations_tenant_id"))
        batch_op.drop_index("ix_credential_rotations_status")
        batch_op.drop_index(batch_op.f("ix_credential_rotations_credential_id"))

    op.drop_table("credential_rotations")
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_event_type"))

    op.drop_table("webhook_subscriptions")
    with op.batch_alter_table("vault_secret_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_vault_secret_versions_name")

    op.drop_table("vault_secret_versions")
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_providers_global_key",
            sqlite_where=sa.text("tenant_id IS NULL"),
            postgresql_where=sa.text("tenant_id IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_providers_tenant_id"))

    op.drop_table("providers")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_messages_unpublished",
            sqlite_where=sa.text("published_at IS NULL"),
            postgresql_where=sa.text("published_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_outbox_messages_tenant_id"))

    op.drop_table("outbox_messages")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credentials_tenant_id"))

    op.drop_table("credentials")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_trace_id"))
        batch_op.drop_index("ix_audit_events_tenant_type")
        batch_op.drop_index("ix_audit_events_tenant_subject")
        batch_op.drop_index("ix_audit_events_tenant_occurred")
        batch_op.drop_index(batch_op.f("ix_audit_events_tenant_id"))

    op.drop_table("audit_events")
