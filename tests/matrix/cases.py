"""A successful call of every mutation, for one tenant of the matrix world.

``CASES[mutation]`` builds the variables of a call that must succeed (no userErrors) when
made with that tenant's token, and says which object's id the payload returns (the event's
subject). A mutation of the schema without a case fails the audit-completeness test: adding
a mutation means adding its case here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.connections.conftest import establish_input
from tests.matrix.conftest import TenantWorld, World


@dataclass(frozen=True)
class Case:
    build: Callable[[World, TenantWorld], Awaitable[dict[str, Any]]]
    payload_object: str  # the payload field holding the subject, e.g. "connection"
    event: str  # the canonical event type it writes


async def _establish(world: World, tw: TenantWorld) -> dict[str, Any]:
    return establish_input(
        tw.ids["Provider"], tw.ids["Credential"], name=f"Matrix {tw.next()}", runTest=False
    )


async def _update(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"id": tw.ids["IntegrationConnection"], "name": f"Renamed {tw.next()}"}


async def _test(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"id": tw.ids["IntegrationConnection"]}


async def _retire(world: World, tw: TenantWorld) -> dict[str, Any]:
    # A connection of its own, so the shared one stays live for the other cases.
    from tests.connections.conftest import ESTABLISH, ok

    name = f"To retire {tw.next()}"
    data = await ok(
        world.http,
        ESTABLISH,
        {
            "input": establish_input(
                tw.ids["Provider"], tw.ids["Credential"], name=name, runTest=False
            )
        },
        tw.token,
    )
    return {"id": data["establishConnection"]["connection"]["id"], "confirmName": name}


async def _register_provider(world: World, tw: TenantWorld) -> dict[str, Any]:
    n = tw.next()
    return {
        "key": f"matrix-extra-{n}",
        "name": f"Matrix extra {n}",
        "category": "OTHER",
        "capabilities": ["things.read"],
        "authModes": ["API_KEY"],
        "baseUrl": "https://api.example.com",
        "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
    }


async def _register_api_client(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {
        "providerId": tw.ids["Provider"],
        "assembly": "ConnectSoft.Matrix.ApiClient",
        "version": f"2.0.{tw.next()}",
        "capabilities": ["employees.read"],
    }


async def _register_credential(world: World, tw: TenantWorld) -> dict[str, Any]:
    name = f"matrix-extra-{tw.tenant}-{tw.next()}"
    vault = world.server.services.vault
    await vault.set_secret(name, "matrix-value", tags={"studio-tenant": tw.tenant})
    return {
        "keyVaultRef": f"{vault.vault_url}/secrets/{name}",
        "authMode": "API_KEY",
        "rotationStrategy": "EXTERNAL",
        "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
    }


async def _rotate_credential(world: World, tw: TenantWorld) -> dict[str, Any]:
    # A GENERATED credential of its own, bound to nothing: the rotation promotes at once and
    # the shared credential keeps the key the fake provider accepts.
    from tests.connections.conftest import register_secret_credential

    credential_id = await register_secret_credential(
        world.http,
        tw.token,
        world.server.services.vault,
        name=f"matrix-rotate-{tw.tenant}-{tw.next()}",
        tenant=tw.tenant,
        value="to-be-rotated",
        strategy="GENERATED",
    )
    return {"credentialId": credential_id}


async def _set_rotation_policy(world: World, tw: TenantWorld) -> dict[str, Any]:
    # A cadence the credential does not have yet (an unchanged policy is no change).
    return {
        "credentialId": tw.ids["Credential"],
        "cadenceDays": 100 + tw.next(),
        "expiryWarningDays": 7,
    }


async def _create_webhook_subscription(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {
        "eventType": "ProviderRegistered",
        "endpointUrl": world.receiver.url,
        "description": f"Matrix {tw.next()}",
    }


async def _update_webhook_subscription(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"id": tw.ids["WebhookSubscription"], "description": f"Described {tw.next()}"}


async def _rotate_webhook_signing_secret(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"id": tw.ids["WebhookSubscription"]}


async def _replay_webhook_delivery(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"deliveryId": tw.ids["WebhookDelivery"]}


async def _recover_webhook_deliveries(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"subscriptionId": tw.ids["WebhookSubscription"], "since": "2000-01-01T00:00:00Z"}


async def _send_test_webhook(world: World, tw: TenantWorld) -> dict[str, Any]:
    return {"subscriptionId": tw.ids["WebhookSubscription"], "eventType": "ProviderRegistered"}


CASES: dict[str, Case] = {
    "establishConnection": Case(_establish, "connection", "IntegrationConnectionEstablished"),
    "updateConnection": Case(_update, "connection", "IntegrationConnectionUpdated"),
    "testConnection": Case(_test, "connection", "IntegrationConnectionTested"),
    "retireConnection": Case(_retire, "connection", "IntegrationConnectionRetired"),
    "registerProvider": Case(_register_provider, "provider", "ProviderRegistered"),
    "registerApiClient": Case(_register_api_client, "apiClient", "ExternalApiClientRegistered"),
    "registerCredential": Case(_register_credential, "credential", "CredentialRegistered"),
    "rotateCredential": Case(_rotate_credential, "credential", "CredentialRotated"),
    "setRotationPolicy": Case(
        _set_rotation_policy, "credential", "CredentialRotationPolicyChanged"
    ),
    "createWebhookSubscription": Case(
        _create_webhook_subscription, "subscription", "WebhookSubscriptionCreated"
    ),
    "updateWebhookSubscription": Case(
        _update_webhook_subscription, "subscription", "WebhookSubscriptionUpdated"
    ),
    "rotateWebhookSigningSecret": Case(
        _rotate_webhook_signing_secret, "subscription", "WebhookSigningSecretRotated"
    ),
    "replayWebhookDelivery": Case(_replay_webhook_delivery, "delivery", "WebhookDeliveryReplayed"),
    "recoverWebhookDeliveries": Case(
        _recover_webhook_deliveries, "subscription", "WebhookDeliveryReplayed"
    ),
    "sendTestWebhook": Case(_send_test_webhook, "delivery", "WebhookTestSent"),
}
