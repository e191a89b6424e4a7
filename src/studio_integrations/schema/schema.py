"""Assembles the Schema: root Query, Mutation and Subscription fields (DESIGN §5).

Root fields only bind names, guards and resolvers; the work is in ``resolvers/`` and
``subscriptions/``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.resolvers.audit import resolve_audit_events
from studio_integrations.resolvers.connections import (
    establish_connection,
    resolve_integration_connections,
    retire_connection,
    test_connection,
    update_connection,
)
from studio_integrations.resolvers.credentials import register_credential, resolve_credentials
from studio_integrations.resolvers.health import (
    resolve_external_health,
    resolve_integration_failures,
)
from studio_integrations.resolvers.node import resolve_node
from studio_integrations.resolvers.providers import (
    register_api_client,
    register_provider,
    resolve_api_clients,
    resolve_capability_matrix,
    resolve_providers,
)
from studio_integrations.resolvers.rotation import (
    resolve_credential_expiry_alerts,
    rotate_credential,
    set_rotation_policy,
)
from studio_integrations.resolvers.webhooks import (
    create_webhook_subscription,
    recover_webhook_deliveries,
    replay_webhook_delivery,
    resolve_webhook_deliveries,
    resolve_webhook_event_types,
    resolve_webhook_subscriptions,
    rotate_webhook_signing_secret,
    send_test_webhook,
    update_webhook_subscription,
)
from studio_integrations.schema.audit import AuditEvent, AuditEventConnection
from studio_integrations.schema.connections import (
    EstablishConnectionPayload,
    IntegrationConnection,
    IntegrationConnectionConnection,
    IntegrationRun,
    RetireConnectionPayload,
    TestConnectionPayload,
    UpdateConnectionPayload,
)
from studio_integrations.schema.context import Info
from studio_integrations.schema.credentials import (
    Credential,
    CredentialConnection,
    RegisterCredentialPayload,
)
from studio_integrations.schema.execution import StudioExecutionContext
from studio_integrations.schema.extensions import schema_extensions
from studio_integrations.schema.health import (
    ExternalHealth,
    HealthChange,
    IntegrationFailure,
    IntegrationFailureConnection,
)
from studio_integrations.schema.providers import (
    CapabilityMatrix,
    ExternalApiClient,
    ExternalApiClientConnection,
    Provider,
    ProviderConnection,
    RegisterApiClientPayload,
    RegisterProviderPayload,
)
from studio_integrations.schema.relay import Node
from studio_integrations.schema.rotation import (
    CredentialExpiryAlert,
    CredentialRotation,
    RotateCredentialPayload,
    SetRotationPolicyPayload,
)
from studio_integrations.schema.viewer import Viewer
from studio_integrations.schema.webhooks import (
    CreateWebhookSubscriptionPayload,
    RecoverWebhookDeliveriesPayload,
    ReplayWebhookDeliveryPayload,
    RotateWebhookSigningSecretPayload,
    SendTestWebhookPayload,
    UpdateWebhookSubscriptionPayload,
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookEventType,
    WebhookSubscription,
    WebhookSubscriptionConnection,
)
from studio_integrations.subscriptions.audit import subscribe_audit_events
from studio_integrations.subscriptions.execution import EventScopedExecutor
from studio_integrations.subscriptions.health import (
    subscribe_health_changed,
    subscribe_integration_failures,
)
from studio_integrations.subscriptions.webhooks import subscribe_webhook_delivery_updated

log = logging.getLogger(__name__)


@strawberry.type
class Query:
    @strawberry.field(description="The authenticated caller and what they may do.")
    def viewer(self, info: Info) -> Viewer:
        return Viewer.for_principal(info.context.require_principal())

    node: Node | None = strawberry.field(
        resolver=resolve_node, description="Any object by its id; null when not visible."
    )

    integration_connections: IntegrationConnectionConnection | None = strawberry.field(
        resolver=resolve_integration_connections,
        extensions=requires(Scope.CONNECTIONS_READ),
        description=(
            "The tenant's connections, newest first unless `orderBy` says otherwise. "
            "Requires `connections:read`."
        ),
    )

    external_health: ExternalHealth | None = strawberry.field(
        resolver=resolve_external_health,
        extensions=requires(Scope.HEALTH_READ),
        description=(
            "Every live connection's health (latency, error rate, circuit), per connection "
            "and per provider. Requires `health:read`."
        ),
    )

    integration_failures: IntegrationFailureConnection | None = strawberry.field(
        resolver=resolve_integration_failures,
        extensions=requires(Scope.HEALTH_READ),
        description=(
            "Failed runs and deliveries, newest first, with their escalation; `groups` counts "
            "them per category. Requires `health:read`."
        ),
    )

    audit_events: AuditEventConnection | None = strawberry.field(
        resolver=resolve_audit_events,
        extensions=requires(Scope.AUDIT_READ),
        description="The tenant's audit log, newest first. Requires `audit:read`.",
    )

    providers: ProviderConnection | None = strawberry.field(
        resolver=resolve_providers,
        extensions=requires(Scope.PROVIDERS_READ),
        description=(
            "The tenant's providers and the global catalogue (`global: true`), newest first. "
            "Requires `providers:read`."
        ),
    )

    api_clients: ExternalApiClientConnection | None = strawberry.field(
        resolver=resolve_api_clients,
        extensions=requires(Scope.PROVIDERS_READ),
        description=(
            "Visible API clients by assembly, newest SemVer first. Requires `providers:read`."
        ),
    )

    capability_matrix: CapabilityMatrix | None = strawberry.field(
        resolver=resolve_capability_matrix,
        extensions=requires(Scope.PROVIDERS_READ),
        description=(
            "Which operations each provider and API client supports: every visible provider, "
            "or the given ones. Requires `providers:read`."
        ),
    )

    credentials: CredentialConnection | None = strawberry.field(
        resolver=resolve_credentials,
        extensions=requires(Scope.CREDENTIALS_READ),
        description=(
            "The tenant's credentials (references and metadata, never values), newest first. "
            "Requires `credentials:read`."
        ),
    )

    credential_expiry_alerts: list[CredentialExpiryAlert] | None = strawberry.field(
        resolver=resolve_credential_expiry_alerts,
        extensions=requires(Scope.CREDENTIALS_READ),
        description=(
            "Credentials whose expiry or rotation due date is within their warning window, "
            "soonest first, with the days left. Requires `credentials:read`."
        ),
    )

    webhook_subscriptions: WebhookSubscriptionConnection | None = strawberry.field(
        resolver=resolve_webhook_subscriptions,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="The tenant's outbound webhook subscriptions, newest first. "
        "Requires `webhooks:read`.",
    )

    webhook_deliveries: WebhookDeliveryConnection | None = strawberry.field(
        resolver=resolve_webhook_deliveries,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="The webhook delivery log, both directions, newest first. "
        "Requires `webhooks:read`.",
    )

    webhook_event_types: list[WebhookEventType] | None = strawberry.field(
        resolver=resolve_webhook_event_types,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="Every event type a webhook subscription can name, with the JSON Schema "
        "of its `data` and an example. Requires `webhooks:read`.",
    )


@strawberry.type
class Mutation:
    establish_connection: EstablishConnectionPayload | None = strawberry.mutation(
        resolver=establish_connection,
        extensions=requires(ACTION_SCOPES["establishConnection"]),
        description=(
            "Connect a provider with a credential and configuration, running its verification "
            "request live first (`runTest`). Requires `connections:write`."
        ),
    )

    update_connection: UpdateConnectionPayload | None = strawberry.mutation(
        resolver=update_connection,
        extensions=requires(ACTION_SCOPES["updateConnection"]),
        description=(
            "Rename a connection or change its configuration or inbound signing secret. "
            "Requires `connections:write`."
        ),
    )

    test_connection: TestConnectionPayload | None = strawberry.mutation(
        resolver=test_connection,
        extensions=requires(ACTION_SCOPES["testConnection"]),
        description=(
            "Run the provider's verification request now; the run is recorded with every "
            "attempt. Requires `connections:write`."
        ),
    )

    retire_connection: RetireConnectionPayload | None = strawberry.mutation(
        resolver=retire_connection,
        extensions=requires(ACTION_SCOPES["retireConnection"]),
        description=(
            "Retire a connection for good (`confirmName` must equal its name). "
            "Requires `connections:write`."
        ),
    )

    register_provider: RegisterProviderPayload | None = strawberry.mutation(
        resolver=register_provider,
        extensions=requires(ACTION_SCOPES["registerProvider"]),
        description="Register a tenant-owned provider. Requires `providers:write`.",
    )

    register_api_client: RegisterApiClientPayload | None = strawberry.mutation(
        resolver=register_api_client,
        extensions=requires(ACTION_SCOPES["registerApiClient"]),
        description=(
            "Register a version of an API client for one of the tenant's providers. "
            "Requires `providers:write`."
        ),
    )

    register_credential: RegisterCredentialPayload | None = strawberry.mutation(
        resolver=register_credential,
        extensions=requires(ACTION_SCOPES["registerCredential"]),
        description=(
            "Bind a secret of the configured vault by reference and pin its version. "
            "Requires `credentials:write`."
        ),
    )

    rotate_credential: RotateCredentialPayload | None = strawberry.mutation(
        resolver=rotate_credential,
        extensions=requires(ACTION_SCOPES["rotateCredential"]),
        description=(
            "Rotate now: a new version (generated into the vault, or the newest one put there "
            "out of band), verified against every bound connection, promoted only when all "
            "pass. Also `POST /integrations/credentials/rotate`. Requires `credentials:rotate`."
        ),
    )

    set_rotation_policy: SetRotationPolicyPayload | None = strawberry.mutation(
        resolver=set_rotation_policy,
        extensions=requires(ACTION_SCOPES["setRotationPolicy"]),
        description=(
            "How often a credential is rotated and how many days ahead expiry and due "
            "rotation are warned about. Requires `credentials:write`."
        ),
    )

    create_webhook_subscription: CreateWebhookSubscriptionPayload | None = strawberry.mutation(
        resolver=create_webhook_subscription,
        extensions=requires(ACTION_SCOPES["createWebhookSubscription"]),
        description="Send events of a type (or `*`) to an HTTPS endpoint, signed with a "
        "`whsec_` secret (generated into the vault unless `signingSecretRef` names one). "
        "Requires `webhooks:write`.",
    )

    update_webhook_subscription: UpdateWebhookSubscriptionPayload | None = strawberry.mutation(
        resolver=update_webhook_subscription,
        extensions=requires(ACTION_SCOPES["updateWebhookSubscription"]),
        description="Change a subscription's endpoint, event type, description, retry "
        "schedule, or switch it on or off. Requires `webhooks:write`.",
    )

    rotate_webhook_signing_secret: RotateWebhookSigningSecretPayload | None = strawberry.mutation(
        resolver=rotate_webhook_signing_secret,
        extensions=requires(ACTION_SCOPES["rotateWebhookSigningSecret"]),
        description="A new signing secret version; the old one keeps signing alongside "
        "for 24 h. Requires `webhooks:write`.",
    )

    replay_webhook_delivery: ReplayWebhookDeliveryPayload | None = strawberry.mutation(
        resolver=replay_webhook_delivery,
        extensions=requires(ACTION_SCOPES["replayWebhookDelivery"]),
        description="Send a delivery's preserved payload again as a new delivery with the same "
        "`webhook-id`. Requires `webhooks:replay`.",
    )

    recover_webhook_deliveries: RecoverWebhookDeliveriesPayload | None = strawberry.mutation(
        resolver=recover_webhook_deliveries,
        extensions=requires(ACTION_SCOPES["recoverWebhookDeliveries"]),
        description="After an endpoint outage: send every FAILED delivery of a subscription "
        "created in `[since, until)` again (same `webhook-id`s), audited once with the count. "
        "Requires `webhooks:replay`.",
    )

    send_test_webhook: SendTestWebhookPayload | None = strawberry.mutation(
        resolver=send_test_webhook,
        extensions=requires(ACTION_SCOPES["sendTestWebhook"]),
        description='Send a signed example of an event type (marked `"test": true`) to a '
        "subscription's endpoint; it is logged like any delivery. Requires `webhooks:write`.",
    )


@strawberry.type
class Subscription:
    webhook_delivery_updated: AsyncGenerator[WebhookDelivery, None] = strawberry.subscription(
        resolver=subscribe_webhook_delivery_updated,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="Each status change of the tenant's webhook deliveries, optionally of one "
        "direction or subscription. Requires `webhooks:read`.",
    )

    health_changed: AsyncGenerator[HealthChange, None] = strawberry.subscription(
        resolver=subscribe_health_changed,
        extensions=requires(Scope.HEALTH_READ),
        description="Each change of a connection's health status, optionally of one connection "
        "or provider. Requires `health:read`."
        "With `after` (a pushed item's `cursor`) it first replays, in commit order, what was "
        "committed since.",
    )

    integration_failures: AsyncGenerator[IntegrationFailure, None] = strawberry.subscription(
        resolver=subscribe_integration_failures,
        extensions=requires(Scope.HEALTH_READ),
        description="Failures as they happen, optionally of one category or connection. "
        "Requires `health:read`."
        "With `after` (a pushed item's `cursor`) it first replays, in commit order, what was "
        "committed since.",
    )

    audit_events: AsyncGenerator[AuditEvent, None] = strawberry.subscription(
        resolver=subscribe_audit_events,
        extensions=requires(Scope.AUDIT_READ),
        description=(
            "The tenant's events as they happen, optionally only some types. Requires "
            "`audit:read`. With `after` (a pushed event's `cursor`) it first replays, in "
            "commit order, what was committed since."
        ),
    )


class StudioSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Client errors are the client's business: log them at DEBUG. Unexpected errors are
        logged once, with their traceback and trace id, by ``ShapeErrors``."""
        for error in errors:
            log.debug("graphql error: %s", error.message)


class FastEventScopedExecutor(EventScopedExecutor, StudioExecutionContext):
    """Plain leaves read without graphql-core's completion walk (``schema.execution``), and
    each subscription event executed with its own memo and context
    (``subscriptions.execution``)."""


def build_schema(*, fast_leaves: bool = True) -> strawberry.Schema:
    """``fast_leaves=False``: graphql-core's own field execution throughout (the reference
    the differential tests compare ``schema.execution`` against)."""
    return StudioSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[
            CredentialRotation,
            AuditEvent,
            Provider,
            ExternalApiClient,
            Credential,
            IntegrationConnection,
            IntegrationRun,
            IntegrationFailure,
            WebhookSubscription,
            WebhookDelivery,
        ],
        extensions=schema_extensions(),
        execution_context_class=FastEventScopedExecutor if fast_leaves else EventScopedExecutor,
    )


schema = build_schema()
