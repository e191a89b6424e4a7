"""The same graph of objects in two tenants (acme and globex), built through the API, and
the success case of every mutation (``cases.py``).

Each tenant has a provider and API client, a credential whose canary secret the fake
provider accepts, a connection with runs, a failing connection (its failed test is an
``IntegrationFailure``), a promoted ``CredentialRotation`` of a GENERATED credential, and a
webhook subscription to a receiver on loopback with a delivered ``WebhookDelivery``. No
health prober runs: probes would write events and runs under the "nothing changed"
assertions.

``TenantWorld.ids`` maps a GraphQL type name to one of the tenant's objects of that type, so
the matrix tests can reach any type through ``node(id:)`` and swap any id for the other
tenant's object of the same type.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import AuditEvent, OutboxMessage
from studio_integrations.services import Services
from tests.conftest import SharedApp, TokenFactory
from tests.connections.conftest import (
    ESTABLISH,
    TEST,
    VERIFY_PATH,
    establish_input,
    ok,
    register_fake_provider,
    register_secret_credential,
)
from tests.fakes.provider import FakeProvider, Reply
from tests.fakes.receiver import WebhookReceiver
from tests.support.live import LiveServer, serve
from tests.support.rows import row_counts

TENANTS = ("acme", "globex")

# Every matrix module: its tests share the module's world, in the module's event loop; the
# dispatcher delivers the world's webhook.
MATRIX = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.workers("relay", "dispatcher")]

REGISTER_API_CLIENT = """
mutation ($input: RegisterApiClientInput!) {
  registerApiClient(input: $input) { apiClient { id } userErrors { field code message } }
}
"""

CREATE_SUBSCRIPTION = """
mutation ($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) {
    subscription { id signingSecretRef signingSecretVersion }
    userErrors { field code message }
  }
}
"""

ROTATE_CREDENTIAL = """
mutation ($id: ID!) {
  rotateCredential(input: {credentialId: $id}) {
    rotation { id status newVersion }
    credential { id keyVaultRef }
    userErrors { field code message }
  }
}
"""

DELIVERIES = """
query ($subscriptionId: ID!) {
  webhookDeliveries(filter: {subscriptionId: $subscriptionId}, first: 5) {
    nodes { id status }
  }
}
"""


@dataclass
class TenantWorld:
    tenant: str
    token: str
    ids: dict[str, str] = field(default_factory=dict)  # GraphQL type name -> an id
    serial: int = 0

    def next(self) -> int:
        self.serial += 1
        return self.serial


@dataclass
class World:
    server: LiveServer
    http: httpx.AsyncClient
    fake: FakeProvider
    receiver: WebhookReceiver
    make_token: TokenFactory
    tenants: dict[str, TenantWorld]
    canaries: set[str]  # every secret value in the vault for the world (signing secrets too)

    @property
    def a(self) -> TenantWorld:
        return self.tenants["acme"]

    @property
    def b(self) -> TenantWorld:
        return self.tenants["globex"]


async def _build_tenant(
    services: Services,
    http: httpx.AsyncClient,
    fake: FakeProvider,
    receiver: WebhookReceiver,
    tw: TenantWorld,
    canary: str,
    canaries: set[str],
) -> None:
    provider_id = await register_fake_provider(http, tw.token, fake.base_url, key="matrix-hr")
    tw.ids["Provider"] = provider_id
    data = await ok(
        http,
        REGISTER_API_CLIENT,
        {
            "input": {
                "providerId": provider_id,
                "assembly": "ConnectSoft.Matrix.ApiClient",
                "version": "1.0.0",
                "capabilities": ["employees.read"],
            }
        },
        tw.token,
    )
    assert data["registerApiClient"]["userErrors"] == [], data
    tw.ids["ExternalApiClient"] = data["registerApiClient"]["apiClient"]["id"]
    tw.ids["Credential"] = await register_secret_credential(
        http,
        tw.token,
        services.vault,
        name=f"matrix-key-{tw.tenant}",
        tenant=tw.tenant,
        value=canary,
    )
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(provider_id, tw.ids["Credential"], name=f"HR {tw.tenant}")},
        tw.token,
    )
    assert data["establishConnection"]["userErrors"] == [], data
    tw.ids["IntegrationConnection"] = data["establishConnection"]["connection"]["id"]
    tw.ids["IntegrationRun"] = data["establishConnection"]["testRun"]["id"]

    # A webhook subscription to the tested event, so the next test is delivered.
    vault = services.vault
    data = await ok(
        http,
        CREATE_SUBSCRIPTION,
        {"input": {"eventType": "IntegrationConnectionTested", "endpointUrl": receiver.url}},
        tw.token,
    )
    assert data["createWebhookSubscription"]["userErrors"] == [], data
    subscription = data["createWebhookSubscription"]["subscription"]
    tw.ids["WebhookSubscription"] = subscription["id"]
    canaries.add(await _secret_value(vault, subscription["signingSecretRef"]))

    data = await ok(http, TEST, {"id": tw.ids["IntegrationConnection"]}, tw.token)
    tw.ids["IntegrationRun"] = data["testConnection"]["run"]["id"]
    tw.ids["WebhookDelivery"] = await _delivered(http, tw)

    # A connection whose key the provider refuses: its failed test is an IntegrationFailure.
    bad_key = f"refused-{tw.tenant}-{uuid.uuid4().hex}"
    canaries.add(bad_key)
    refused = await register_secret_credential(
        http, tw.token, vault, name=f"matrix-refused-{tw.tenant}", tenant=tw.tenant, value=bad_key
    )
    data = await ok(
        http,
        ESTABLISH,
        {
            "input": establish_input(
                provider_id, refused, name=f"Refused {tw.tenant}", runTest=False
            )
        },
        tw.token,
    )
    failing = data["establishConnection"]["connection"]["id"]
    data = await ok(http, TEST, {"id": failing}, tw.token)
    assert data["testConnection"]["run"]["status"] == "FAILED", data
    data = await ok(http, "{ integrationFailures(first: 1) { nodes { id } } }", {}, tw.token)
    tw.ids["IntegrationFailure"] = data["integrationFailures"]["nodes"][0]["id"]

    # A GENERATED credential bound to nothing, rotated: a promoted CredentialRotation.
    generated = await register_secret_credential(
        http,
        tw.token,
        vault,
        name=f"matrix-generated-{tw.tenant}",
        tenant=tw.tenant,
        value=f"generated-{uuid.uuid4().hex}",
        strategy="GENERATED",
    )
    data = await ok(http, ROTATE_CREDENTIAL, {"id": generated}, tw.token)
    rotation = data["rotateCredential"]["rotation"]
    assert rotation["status"] == "PROMOTED", data
    tw.ids["CredentialRotation"] = rotation["id"]
    ref = data["rotateCredential"]["credential"]["keyVaultRef"]
    canaries.add(await _secret_value(vault, ref, rotation["newVersion"]))

    data = await ok(http, "{ auditEvents(first: 1) { nodes { id } } }", {}, tw.token)
    tw.ids["AuditEvent"] = data["auditEvents"]["nodes"][0]["id"]


async def _secret_value(vault: Any, ref: str, version: str | None = None) -> str:
    from studio_integrations.vault.base import parse_secret_ref

    parsed = parse_secret_ref(ref)
    value: str = (await vault.get_secret(parsed.name, version or parsed.version)).value
    return value


async def _delivered(http: httpx.AsyncClient, tw: TenantWorld) -> str:
    """The id of the subscription's first delivery, once the receiver has taken it."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        data = await ok(
            http, DELIVERIES, {"subscriptionId": tw.ids["WebhookSubscription"]}, tw.token
        )
        nodes = data["webhookDeliveries"]["nodes"]
        if nodes and nodes[-1]["status"] == "SUCCEEDED":
            delivery_id: str = nodes[-1]["id"]
            return delivery_id
        assert asyncio.get_running_loop().time() < deadline, f"no delivery for {tw.tenant}: {data}"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(shared: SharedApp) -> AsyncIterator[World]:
    """One world per module and back end (the modules run in the module's loop and ask for
    the dispatcher: see ``MATRIX``)."""
    http, make_token = shared.http, shared.make_token
    fake, receiver = FakeProvider(), WebhookReceiver()
    async with serve(shared.app, lifespan="off") as server, fake.running(), receiver.running():
        fake.on(VERIFY_PATH, Reply(json={"ok": True}, headers={"X-Request-Id": "req-1"}))
        keys = {t: f"canary-{t}-{uuid.uuid4().hex}" for t in TENANTS}
        fake.require_key(VERIFY_PATH, set(keys.values()))
        canaries = set(keys.values())
        tenants = {t: TenantWorld(t, make_token(tenant=t)) for t in TENANTS}
        for tw in tenants.values():
            await _build_tenant(
                server.services, http, fake, receiver, tw, keys[tw.tenant], canaries
            )
        yield World(server, http, fake, receiver, make_token, tenants, canaries)


@dataclass(frozen=True)
class Trail:
    """Every audit and outbox row, across tenants: what a refused call must not change."""

    audit_events: int
    outbox: int


async def trail(db: Database) -> Trail:
    return Trail(**await row_counts(db, audit_events=AuditEvent, outbox=OutboxMessage))


def without(*scopes: Any) -> str:
    from studio_integrations.auth.scopes import ALL_SCOPES

    names = {s.value if hasattr(s, "value") else s for s in scopes}
    return " ".join(sorted(s.value for s in ALL_SCOPES if s.value not in names))
