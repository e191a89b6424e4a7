"""Credential audience: a secret goes only to the providers and hosts its owner named.

Before it, a token with ``providers:write connections:write`` could register a provider at
its own host, bind any credential of the tenant and receive the secret with the test call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.migrations import downgrade, upgrade
from studio_integrations.persistence.models import Credential, IntegrationConnection
from tests.conftest import TokenFactory
from tests.connections import conftest as connection_fixtures
from tests.connections.conftest import (
    AUDIT,
    ESTABLISH,
    GOOD_KEY,
    REGISTER_CREDENTIAL,
    TEST,
    VERIFY_PATH,
    World,
    establish_input,
    ok,
    register_fake_provider,
    user_errors,
)
from tests.fakes.provider import FakeProvider, Reply
from tests.support.backends import Backend
from tests.support.graphql import gql
from tests.support.live import LiveServer
from tests.support.rows import row_counts

pytestmark = pytest.mark.backends
fake = connection_fixtures.fake
world = connection_fixtures.world

ESTABLISH_BARE = """
mutation ($input: EstablishConnectionInput!) {
  establishConnection(input: $input) { userErrors { field code message } }
}
"""
CREDENTIAL = "query ($id: ID!) { node(id: $id) { ... on Credential { audience } } }"


@pytest.fixture
async def attacker_host() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    async with provider.running() as running:
        running.on(VERIFY_PATH, Reply(json={"id": 1}))
        yield running


async def test_binding_outside_the_audience_is_refused_without_credentials_write(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    world: World,
    attacker_host: FakeProvider,
) -> None:
    # The owner binds the credential to its provider: the audience becomes that provider.
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id)},
        world.token,
    )
    assert user_errors(data["establishConnection"]) == []
    attacker = make_token(subject="mallory", scopes="providers:write connections:write")
    evil_provider = await register_fake_provider(
        http, attacker, attacker_host.base_url, key="evil-hr"
    )
    before = await row_counts(server.services.db, connections=IntegrationConnection)
    body = await gql(
        http,
        ESTABLISH_BARE,
        {"input": establish_input(evil_provider, world.credential_id, name="exfil")},
        token=attacker,
    )
    errors = body["data"]["establishConnection"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        ("input.credentialId", "CREDENTIAL_AUDIENCE")
    ]
    assert attacker_host.requests == []
    assert await row_counts(server.services.db, connections=IntegrationConnection) == before
    audience = await ok(http, CREDENTIAL, {"id": world.credential_id}, world.token)
    assert audience["node"]["audience"] == [world.provider_id]


async def test_credentials_write_widens_the_audience_and_it_is_audited(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    world: World,
    attacker_host: FakeProvider,
) -> None:
    second = await register_fake_provider(http, world.token, attacker_host.base_url, key="hr-2")
    attacker_host.require_key(VERIFY_PATH, {GOOD_KEY})
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(second, world.credential_id, runTest=False)},
        world.token,
    )
    connection_id = data["establishConnection"]["connection"]["id"]
    audience = await ok(http, CREDENTIAL, {"id": world.credential_id}, world.token)
    assert audience["node"]["audience"] == [second]
    events = await ok(http, AUDIT, {"subjectId": connection_id}, world.token)
    established = [
        e for e in events["auditEvents"]["nodes"] if e["type"] == "IntegrationConnectionEstablished"
    ]
    assert established[0]["data"]["credentialAudienceWidened"] == {
        "credentialId": world.credential_id,
        "added": [second],
        "audience": [second],
    }
    # Binding again inside the audience widens nothing.
    again = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(second, world.credential_id, runTest=False, name="again")},
        world.token,
    )
    events = await ok(
        http, AUDIT, {"subjectId": again["establishConnection"]["connection"]["id"]}, world.token
    )
    assert "credentialAudienceWidened" not in events["auditEvents"]["nodes"][0]["data"]


async def test_every_call_checks_the_audience_again(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id, runTest=False)},
        world.token,
    )
    connection_id = data["establishConnection"]["connection"]["id"]
    # The audience changes under a bound connection (an owner narrowing it, a stale row).
    async with server.services.db.transaction(TenantScope.of("acme")) as session:
        await session.execute(
            update(Credential).where(Credential.id == world.credential_id).values(audience=[])
        )
    world.fake.requests.clear()
    tested = await ok(http, TEST, {"id": connection_id}, world.token)
    run = tested["testConnection"]["run"]
    assert (run["status"], run["errorCategory"]) == ("FAILED", "CONFIGURATION")
    assert "audience" in run["errorMessage"]
    assert world.fake.requests == []


async def test_a_host_audience_allows_that_host(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory, world: World
) -> None:
    vault = server.services.vault
    await vault.set_secret("host-key", GOOD_KEY, tags={"studio-tenant": "acme"})
    registered = await ok(
        http,
        REGISTER_CREDENTIAL,
        {
            "input": {
                "keyVaultRef": f"{vault.vault_url}/secrets/host-key",
                "authMode": "API_KEY",
                "rotationStrategy": "EXTERNAL",
                "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
                "audience": ["127.0.0.1"],
            }
        },
        world.token,
    )
    credential_id = registered["registerCredential"]["credential"]["id"]
    connector = make_token(scopes="connections:write connections:read")
    document = ESTABLISH_BARE.replace("userErrors", "testRun { status } userErrors")
    data = await ok(
        http, document, {"input": establish_input(world.provider_id, credential_id)}, connector
    )
    assert data["establishConnection"]["userErrors"] == []
    assert data["establishConnection"]["testRun"]["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("audience", "code"),
    [
        (["not a host"], "INVALID_AUDIENCE"),
        (["https://api.example.com/x"], "INVALID_AUDIENCE"),
        (["prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ"], "PROVIDER_NOT_FOUND"),
        ([f"h{i}.example.com" for i in range(51)], "TOO_LARGE"),
    ],
)
async def test_register_refuses_a_bad_audience(
    server: LiveServer, http: httpx.AsyncClient, world: World, audience: list[str], code: str
) -> None:
    vault = server.services.vault
    await vault.set_secret("aud-key", "k", tags={"studio-tenant": "acme"})
    data: Any = await ok(
        http,
        REGISTER_CREDENTIAL,
        {
            "input": {
                "keyVaultRef": f"{vault.vault_url}/secrets/aud-key",
                "authMode": "API_KEY",
                "rotationStrategy": "EXTERNAL",
                "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
                "audience": audience,
            }
        },
        world.token,
    )
    assert [(e["field"], e["code"]) for e in data["registerCredential"]["userErrors"]] == [
        ("input.audience", code)
    ]


async def test_existing_credentials_migrate_to_the_providers_they_are_bound_to(
    server: LiveServer, http: httpx.AsyncClient, world: World, backend: Backend
) -> None:
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id, runTest=False)},
        world.token,
    )
    assert user_errors(data["establishConnection"]) == []
    vault = server.services.vault
    await vault.set_secret("unbound-key", "k", tags={"studio-tenant": "acme"})
    registered = await ok(
        http,
        REGISTER_CREDENTIAL,
        {
            "input": {
                "keyVaultRef": f"{vault.vault_url}/secrets/unbound-key",
                "authMode": "API_KEY",
                "rotationStrategy": "EXTERNAL",
                "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
                "audience": ["api.example.com"],
            }
        },
        world.token,
    )
    unbound = registered["registerCredential"]["credential"]["id"]
    await server.services.db.dispose()  # no pooled connection holds the tables
    await asyncio.to_thread(downgrade, backend.database_url, "0004")
    await asyncio.to_thread(upgrade, backend.database_url)
    engine = create_async_engine(backend.database_url, poolclass=NullPool)
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT id, audience FROM credentials"))
        rows = {key: value for key, value in result}
    await engine.dispose()
    audiences = {k: v if isinstance(v, list) else json.loads(v) for k, v in rows.items()}
    assert audiences == {world.credential_id: [world.provider_id], unbound: []}
