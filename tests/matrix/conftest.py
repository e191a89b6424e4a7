"""The same graph of objects in two tenants (acme and globex), built through the API, and
the success case of every mutation (``cases.py``).

``TenantWorld.ids`` maps a GraphQL type name to one of the tenant's objects of that type, so
the matrix tests can reach any type through ``node(id:)`` and swap any id for the other
tenant's object of the same type.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import AuditEvent, OutboxMessage
from tests.conftest import TokenFactory
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
from tests.support.live import LiveServer
from tests.support.rows import row_counts

TENANTS = ("acme", "globex")

REGISTER_API_CLIENT = """
mutation ($input: RegisterApiClientInput!) {
  registerApiClient(input: $input) { apiClient { id } userErrors { field code message } }
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
    make_token: TokenFactory
    tenants: dict[str, TenantWorld]
    canaries: set[str]  # every secret value planted in the vault for the world

    @property
    def a(self) -> TenantWorld:
        return self.tenants["acme"]

    @property
    def b(self) -> TenantWorld:
        return self.tenants["globex"]


async def _build_tenant(
    server: LiveServer, http: httpx.AsyncClient, fake: FakeProvider, tw: TenantWorld, canary: str
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
        server.services.vault,
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
    data = await ok(http, TEST, {"id": tw.ids["IntegrationConnection"]}, tw.token)
    tw.ids["IntegrationRun"] = data["testConnection"]["run"]["id"]
    data = await ok(http, "{ auditEvents(first: 1) { nodes { id } } }", {}, tw.token)
    tw.ids["AuditEvent"] = data["auditEvents"]["nodes"][0]["id"]


@pytest.fixture
async def world(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> AsyncIterator[World]:
    fake = FakeProvider()
    async with fake.running():
        fake.on(VERIFY_PATH, Reply(json={"ok": True}, headers={"X-Request-Id": "req-1"}))
        canaries = {t: f"canary-{t}-{uuid.uuid4().hex}" for t in TENANTS}
        fake.require_key(VERIFY_PATH, set(canaries.values()))
        tenants = {t: TenantWorld(t, make_token(tenant=t)) for t in TENANTS}
        for tw in tenants.values():
            await _build_tenant(server, http, fake, tw, canaries[tw.tenant])
        yield World(server, http, fake, make_token, tenants, set(canaries.values()))


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
