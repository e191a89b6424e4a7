"""Connection fixtures: GraphQL documents, a fake provider registered as a tenant provider,
a tenant credential whose secret the fake accepts, and row counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import (
    AuditEvent,
    IntegrationConnection,
    IntegrationFailure,
    IntegrationRun,
    OutboxMessage,
)
from studio_integrations.services import Services
from studio_integrations.vault.base import SecretStore
from tests.conftest import TokenFactory
from tests.fakes.provider import FakeProvider, Reply
from tests.support.graphql import gql
from tests.support.rows import row_counts

RUN_FIELDS = """
  id connectionId kind status credentialVersion externalRef httpStatus latencyMs
  errorCategory errorMessage startedAt finishedAt
  attempts { number httpStatus latencyMs errorCategory errorMessage externalRef }
"""

CONNECTION_FIELDS = f"""
  id name projectId providerId status authMode configuration inboundSigningSecretRef
  retiredAt retiredReason version createdBy
  provider {{ id key name }}
  credential {{ id keyVaultRef currentVersion }}
  health {{ status circuitState }}
  runs(first: 10) {{ nodes {{ {RUN_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }}
  viewerCan {{ test update retire }}
"""

ESTABLISH = f"""
mutation ($input: EstablishConnectionInput!) {{
  establishConnection(input: $input) {{
    connection {{ {CONNECTION_FIELDS} }}
    testRun {{ {RUN_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

UPDATE = f"""
mutation ($input: UpdateConnectionInput!) {{
  updateConnection(input: $input) {{
    connection {{ {CONNECTION_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

TEST = f"""
mutation ($id: ID!) {{
  testConnection(input: {{id: $id}}) {{
    run {{ {RUN_FIELDS} }}
    connection {{ id status }}
    userErrors {{ field code message }}
  }}
}}
"""

RETIRE = f"""
mutation ($id: ID!, $confirmName: String!) {{
  retireConnection(input: {{id: $id, confirmName: $confirmName}}) {{
    connection {{ {CONNECTION_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

NODE = f"""
query ($id: ID!) {{ node(id: $id) {{ id ... on IntegrationConnection {{ {CONNECTION_FIELDS} }} }} }}
"""

CONNECTIONS = f"""
query ($filter: IntegrationConnectionFilter, $orderBy: IntegrationConnectionOrder,
       $first: Int! = 100, $after: String) {{
  integrationConnections(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {{
    nodes {{ {CONNECTION_FIELDS} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

AUDIT = """
query ($subjectId: ID) {
  auditEvents(filter: {subjectId: $subjectId}, first: 100) {
    nodes { type actor { subject kind } traceId subject { type id } data }
  }
}
"""

REGISTER_PROVIDER = """
mutation ($input: RegisterProviderInput!) {
  registerProvider(input: $input) { provider { id } userErrors { field code message } }
}
"""

REGISTER_CREDENTIAL = """
mutation ($input: RegisterCredentialInput!) {
  registerCredential(input: $input) {
    credential { id currentVersion } userErrors { field code message }
  }
}
"""

VERIFY_PATH = "/v1/accounts/acme-1/me"
GOOD_KEY = "key-0f9e8d7c6b5a"


async def ok(http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str) -> Any:
    """The data of a request that must not fail at the GraphQL level."""
    body = await gql(http, query, variables, token=token)
    assert "errors" not in body, body
    return body["data"]


async def register_fake_provider(
    http: httpx.AsyncClient, token: str, base_url: str, *, key: str = "fake-hr", **over: Any
) -> str:
    provider = {
        "key": key,
        "name": "Fake HR",
        "category": "HR",
        "capabilities": ["employees.read"],
        "authModes": ["API_KEY", "BEARER_TOKEN"],
        "baseUrl": base_url,
        "verification": {"method": "GET", "path": "/v1/accounts/{account}/me", "expectStatus": 200},
        "configurationSchema": {
            "type": "object",
            "properties": {
                "account": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                "pageSize": {"type": "integer", "minimum": 1, "maximum": 500},
            },
            "required": ["account"],
            "additionalProperties": False,
        },
    }
    provider.update(over)
    data = await ok(http, REGISTER_PROVIDER, {"input": provider}, token)
    assert data["registerProvider"]["userErrors"] == [], data
    provider_id: str = data["registerProvider"]["provider"]["id"]
    return provider_id


async def register_secret_credential(
    http: httpx.AsyncClient,
    token: str,
    vault: SecretStore,
    *,
    name: str = "fake-hr-key",
    value: str = GOOD_KEY,
    tenant: str = "acme",
    auth_mode: str = "API_KEY",
    strategy: str = "EXTERNAL",
) -> str:
    await vault.set_secret(name, value, tags={"studio-tenant": tenant})
    ref = f"{vault.vault_url}/secrets/{name}"
    data = await ok(
        http,
        REGISTER_CREDENTIAL,
        {
            "input": {
                "keyVaultRef": ref,
                "authMode": auth_mode,
                "rotationStrategy": strategy,
                "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
            }
        },
        token,
    )
    assert data["registerCredential"]["userErrors"] == [], data
    credential_id: str = data["registerCredential"]["credential"]["id"]
    return credential_id


def establish_input(provider_id: str, credential_id: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "providerId": provider_id,
        "name": "HR production",
        "projectId": "payroll",
        "authMode": "API_KEY",
        "credentialId": credential_id,
        "configuration": {"account": "acme-1"},
        "runTest": True,
    }
    doc.update(over)
    return doc


@dataclass
class World:
    """A tenant (acme) with a fake provider that accepts GOOD_KEY and a credential for it."""

    fake: FakeProvider
    token: str
    provider_id: str
    credential_id: str
    accepted: set[str]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    async with provider.running() as running:
        yield running


@pytest.fixture
async def world(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory, fake: FakeProvider
) -> World:
    token = make_token(tenant="acme")
    fake.on(VERIFY_PATH, Reply(json={"id": 7}, headers={"X-Request-Id": "req-ok"}))
    accepted = fake.require_key(VERIFY_PATH, {GOOD_KEY})
    provider_id = await register_fake_provider(http, token, fake.base_url)
    credential_id = await register_secret_credential(http, token, services.vault)
    return World(fake, token, provider_id, credential_id, accepted)


@dataclass(frozen=True)
class Counts:
    connections: int
    runs: int
    failures: int
    audit_events: int
    outbox: int


async def counts(db: Database) -> Counts:
    return Counts(
        **await row_counts(
            db,
            connections=IntegrationConnection,
            runs=IntegrationRun,
            failures=IntegrationFailure,
            audit_events=AuditEvent,
            outbox=OutboxMessage,
        )
    )


# --- Another tenant, and refusals (bad-input, listing and leak tests) ----------------------

RETIRE_WITH_VERSION = f"""
mutation ($input: RetireConnectionInput!) {{
  retireConnection(input: $input) {{
    connection {{ {CONNECTION_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""


@dataclass
class Foreign:
    """Tenant globex's own provider, credential and connection: for acme, ids that must
    behave exactly like ids that do not exist."""

    token: str
    provider_id: str
    credential_id: str
    connection_id: str


@pytest.fixture
async def foreign(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory, world: World
) -> Foreign:
    token = make_token(tenant="globex")
    provider_id = await register_fake_provider(http, token, world.fake.base_url)
    credential_id = await register_secret_credential(
        http, token, services.vault, name="globex-hr-key", tenant="globex"
    )
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(provider_id, credential_id, runTest=False)},
        token,
    )
    assert data["establishConnection"]["userErrors"] == [], data
    return Foreign(
        token, provider_id, credential_id, data["establishConnection"]["connection"]["id"]
    )


async def establish_offline(http: httpx.AsyncClient, world: World, **over: Any) -> dict[str, Any]:
    """An ACTIVE acme connection established without a live test (no outbound call)."""
    over.setdefault("runTest", False)
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id, **over)},
        world.token,
    )
    payload = data["establishConnection"]
    assert payload["userErrors"] == [], payload
    connection: dict[str, Any] = payload["connection"]
    return connection


def user_errors(payload: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    return [(e["field"], e["code"], e["message"]) for e in payload["userErrors"]]


async def stop_prober(services: Services) -> None:
    """Stop the server's health prober (when this build has one). It probes every connection
    as soon as it is established; tests that count rows, runs, events or provider requests
    must not race those probes."""
    prober = getattr(services, "health_prober", None)
    if prober is not None:
        await prober.stop()


@pytest.fixture
async def quiet(server: Any) -> None:
    """The `server` without its health prober (see ``stop_prober``)."""
    await stop_prober(server.services)
