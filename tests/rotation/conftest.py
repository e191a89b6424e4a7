"""Rotation fixtures: the connections World (fake provider accepting only GOOD_KEY, an
EXTERNAL credential for it), GraphQL documents, a gate that holds provider calls, and row
counts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from studio_integrations.outbound.provider_calls import (
    CallOutcome,
    ProviderCaller,
    ProviderRequest,
    ResolvedCredential,
)
from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import (
    AuditEvent,
    CredentialRotation,
    IntegrationFailure,
    IntegrationRun,
    OutboxMessage,
)
from tests.connections.conftest import (  # noqa: F401  (fixtures)
    ESTABLISH,
    World,
    establish_input,
    fake,
    ok,
    world,
)
from tests.support.rows import row_counts

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
OTHER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACEPARENT = f"00-{OTHER_TRACE_ID}-00f067aa0ba902b7-01"

RUN_FIELDS = "id connectionId kind status credentialVersion httpStatus errorCategory rotationId"
ROTATION_FIELDS = f"""
  id credentialId status previousVersion newVersion failureReason requestedBy startedAt
  finishedAt leaseUntil verificationRuns {{ {RUN_FIELDS} }}
"""

ROTATE = f"""
mutation ($id: ID!) {{
  rotateCredential(input: {{credentialId: $id}}) {{
    rotation {{ {ROTATION_FIELDS} }}
    credential {{ id currentVersion lastRotatedAt expiresAt rotationStrategy }}
    userErrors {{ field code message }}
  }}
}}
"""

SET_POLICY = """
mutation ($input: SetRotationPolicyInput!) {
  setRotationPolicy(input: $input) {
    credential { id rotationPolicy { cadenceDays expiryWarningDays } }
    userErrors { field code message }
  }
}
"""

ALERTS = """
query { credentialExpiryAlerts { kind at daysLeft currentVersion credential { id name } } }
"""

CREDENTIAL = f"""
query ($id: ID!) {{
  node(id: $id) {{
    ... on Credential {{
      id currentVersion lastRotatedAt
      lastRotation {{ id status }}
      rotations(first: 10) {{ {ROTATION_FIELDS} }}
    }}
  }}
}}
"""

ROTATION_NODE = f"""
query ($id: ID!) {{ node(id: $id) {{ id ... on CredentialRotation {{ {ROTATION_FIELDS} }} }} }}
"""

TEST = """
mutation ($id: ID!) {
  testConnection(input: {id: $id}) {
    run { id status credentialVersion errorCategory } userErrors { field code message }
  }
}
"""

AUDIT = """
query ($subjectId: ID) {
  auditEvents(filter: {subjectId: $subjectId}, first: 100) {
    nodes { id type actor { subject kind } traceId subject { type id } data }
  }
}
"""

REGISTER_CREDENTIAL = """
mutation ($input: RegisterCredentialInput!) {
  registerCredential(input: $input) {
    credential { id currentVersion } userErrors { field code message }
  }
}
"""


async def register_credential(
    http: httpx.AsyncClient,
    token: str,
    vault: Any,
    name: str,
    value: str,
    *,
    tenant: str = "acme",
    strategy: str = "EXTERNAL",
    cadence: int = 90,
    warning: int = 14,
    expires_at: str | None = None,
) -> tuple[str, str]:
    """(credential id, pinned version) of a new credential on a new tenant-tagged secret."""
    await vault.set_secret(name, value, tags={"studio-tenant": tenant})
    doc: dict[str, Any] = {
        "keyVaultRef": f"{vault.vault_url}/secrets/{name}",
        "authMode": "API_KEY",
        "rotationStrategy": strategy,
        "rotationPolicy": {"cadenceDays": cadence, "expiryWarningDays": warning},
    }
    if expires_at is not None:
        doc["expiresAt"] = expires_at
    data = await ok(http, REGISTER_CREDENTIAL, {"input": doc}, token)
    assert data["registerCredential"]["userErrors"] == [], data
    credential = data["registerCredential"]["credential"]
    return credential["id"], credential["currentVersion"]


async def establish(
    http: httpx.AsyncClient, the_world: World, credential_id: str | None = None, **over: Any
) -> str:
    data = await ok(
        http,
        ESTABLISH,
        {
            "input": establish_input(
                the_world.provider_id, credential_id or the_world.credential_id, **over
            )
        },
        the_world.token,
    )
    assert data["establishConnection"]["userErrors"] == [], data
    connection_id: str = data["establishConnection"]["connection"]["id"]
    return connection_id


async def rotate(
    http: httpx.AsyncClient, token: str, credential_id: str, traceparent: str | None = None
) -> dict[str, Any]:
    body = await http.post(
        "/graphql",
        json={"query": ROTATE, "variables": {"id": credential_id}},
        headers={"Authorization": f"Bearer {token}"}
        | ({"traceparent": traceparent} if traceparent else {}),
    )
    assert body.status_code == 200, body.text
    doc: dict[str, Any] = body.json()
    assert "errors" not in doc, doc
    payload: dict[str, Any] = doc["data"]["rotateCredential"]
    return payload


@dataclass(frozen=True)
class Counts:
    rotations: int
    runs: int
    failures: int
    audit_events: int
    outbox: int


async def counts(db: Database) -> Counts:
    return Counts(
        **await row_counts(
            db,
            rotations=CredentialRotation,
            runs=IntegrationRun,
            failures=IntegrationFailure,
            audit_events=AuditEvent,
            outbox=OutboxMessage,
        )
    )


class GatedCaller:
    """A ProviderCaller that holds every call until ``release()`` (``entered`` is set when
    the first call arrives): makes "a rotation is running" a state the test controls."""

    def __init__(self, inner: ProviderCaller) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def release(self) -> None:
        self.gate.set()

    async def call(self, request: ProviderRequest, credential: ResolvedCredential) -> CallOutcome:
        self.entered.set()
        await self.gate.wait()
        return await self.inner.call(request, credential)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
