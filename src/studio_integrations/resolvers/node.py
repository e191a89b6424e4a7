"""node(id:): the id names its type; the type's entry says which scope reads it and how.

Each area registers its node types in ``NODE_TYPES`` (``register_node``). An id of an unknown
type, of another tenant, or of nothing at all answers ``null`` alike; a known type the caller
may not read answers ``null`` with FORBIDDEN, exactly as the type's list field would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import strawberry

from studio_integrations.auth.scopes import Scope
from studio_integrations.core.errors import Forbidden
from studio_integrations.core.ids import type_of
from studio_integrations.persistence.models import AuditEvent as AuditEventRow
from studio_integrations.persistence.models import Base
from studio_integrations.persistence.models import Credential as CredentialRow
from studio_integrations.persistence.models import CredentialRotation as RotationRow
from studio_integrations.persistence.models import ExternalApiClient as ExternalApiClientRow
from studio_integrations.persistence.models import IntegrationConnection as ConnectionRow
from studio_integrations.persistence.models import IntegrationFailure as FailureRow
from studio_integrations.persistence.models import IntegrationRun as RunRow
from studio_integrations.persistence.models import Provider as ProviderRow
from studio_integrations.persistence.models import WebhookDelivery as WebhookDeliveryRow
from studio_integrations.persistence.models import WebhookSubscription as WebhookSubscriptionRow
from studio_integrations.schema.audit import AuditEvent
from studio_integrations.schema.connections import IntegrationConnection, IntegrationRun
from studio_integrations.schema.context import Info
from studio_integrations.schema.credentials import Credential
from studio_integrations.schema.health import IntegrationFailure
from studio_integrations.schema.providers import ExternalApiClient, Provider
from studio_integrations.schema.relay import Node
from studio_integrations.schema.rotation import CredentialRotation
from studio_integrations.schema.viewer import Viewer
from studio_integrations.schema.webhooks import WebhookDelivery, WebhookSubscription


@dataclass(frozen=True, slots=True)
class NodeType:
    scope: Scope
    model: type[Base]
    to_node: Callable[[Any], Node]


NODE_TYPES: dict[str, NodeType] = {}


def register_node(type_name: str, node_type: NodeType) -> None:
    NODE_TYPES[type_name] = node_type


register_node("AuditEvent", NodeType(Scope.AUDIT_READ, AuditEventRow, AuditEvent.from_row))
register_node("Provider", NodeType(Scope.PROVIDERS_READ, ProviderRow, Provider.from_row))
register_node(
    "ExternalApiClient",
    NodeType(Scope.PROVIDERS_READ, ExternalApiClientRow, ExternalApiClient.from_row),
)
register_node("Credential", NodeType(Scope.CREDENTIALS_READ, CredentialRow, Credential.from_row))
register_node(
    "CredentialRotation",
    NodeType(Scope.CREDENTIALS_READ, RotationRow, CredentialRotation.from_row),
)
register_node(
    "IntegrationConnection",
    NodeType(Scope.CONNECTIONS_READ, ConnectionRow, IntegrationConnection.from_row),
)
register_node("IntegrationRun", NodeType(Scope.CONNECTIONS_READ, RunRow, IntegrationRun.from_row))
register_node(
    "IntegrationFailure", NodeType(Scope.HEALTH_READ, FailureRow, IntegrationFailure.from_row)
)
register_node(
    "WebhookSubscription",
    NodeType(Scope.WEBHOOKS_READ, WebhookSubscriptionRow, WebhookSubscription.from_row),
)
register_node(
    "WebhookDelivery",
    NodeType(Scope.WEBHOOKS_READ, WebhookDeliveryRow, WebhookDelivery.from_row),
)


async def resolve_node(info: Info, id: strawberry.ID) -> Node | None:
    type_name = type_of(str(id))
    node_type = NODE_TYPES.get(type_name) if type_name else None
    if node_type is None:
        return None
    principal = info.context.require_principal()
    if not principal.has(node_type.scope):
        raise Forbidden(
            f"Forbidden: reading a {type_name} requires the '{node_type.scope.value}' scope."
        )
    row = await info.context.loaders.by_id(node_type.model).load(str(id))
    return None if row is None else node_type.to_node(row)


@strawberry.type
class NodeQuery:
    node: Node | None = strawberry.field(
        resolver=resolve_node, description="Any object by its id; null when not visible."
    )


@strawberry.type
class ViewerQuery:
    @strawberry.field(description="The authenticated caller and what they may do.")
    def viewer(self, info: Info) -> Viewer:
        return Viewer.for_principal(info.context.require_principal())
