"""No secret value anywhere (a planted canary), and listing with bound connections in a
constant number of SQL statements."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.core.enums import AuthMode, ConnectionStatus, RotationStrategy
from studio_integrations.core.ids import new_id
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import (
    AuditEvent,
    Credential,
    IntegrationConnection,
    OutboxMessage,
    Provider,
)
from studio_integrations.seed.catalogue import load_catalogue
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.credentials.conftest import (
    AUDIT,
    CREDENTIALS,
    LOCAL_REF,
    NODE,
    REGISTER_CREDENTIAL,
    credential_input,
    put_secret,
)
from tests.support.graphql import gql
from tests.support.live import LiveServer


async def test_a_canary_secret_appears_in_no_response_event_or_log(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    vault = services.vault
    version = await put_secret(vault, value=canary)

    async def no_reading(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("registering or listing a credential must not read a value")

    monkeypatch.setattr(vault, "get_secret", no_reading)
    caplog.set_level(logging.DEBUG)
    token = make_token()
    bodies: list[dict[str, Any]] = []

    registered = await gql(
        http,
        REGISTER_CREDENTIAL,
        {"input": credential_input(keyVaultRef=f"{LOCAL_REF}/{version.version}")},
        token=token,
    )
    bodies.append(registered)
    credential = registered["data"]["registerCredential"]["credential"]
    assert credential["currentVersion"] == version.version
    # A refused attempt (duplicate) and another tenant's attempt are searched too.
    bodies.append(await gql(http, REGISTER_CREDENTIAL, {"input": credential_input()}, token=token))
    bodies.append(
        await gql(
            http,
            REGISTER_CREDENTIAL,
            {"input": credential_input()},
            token=make_token(tenant="globex"),
        )
    )
    bodies.append(await gql(http, CREDENTIALS, token=token))
    bodies.append(await gql(http, NODE, {"id": credential["id"]}, token=token))
    bodies.append(await gql(http, AUDIT, {"subjectId": credential["id"]}, token=token))
    assert bodies[-1]["data"]["auditEvents"]["nodes"][0]["type"] == "CredentialRegistered"

    for body in bodies:
        assert canary not in json.dumps(body)
    async with services.db.session(TenantScope.system_scope()) as session:
        events = (await session.execute(select(AuditEvent))).scalars().all()
        outbox = (await session.execute(select(OutboxMessage))).scalars().all()
    assert [e.type for e in events] == ["CredentialRegistered"]
    assert all(canary not in json.dumps(e.data) for e in events)
    assert all(canary not in m.payload for m in outbox)
    assert caplog.records, "DEBUG logging captured nothing: the search would prove nothing"
    for record in caplog.records:
        assert canary not in record.getMessage()
        assert canary not in repr(record.args)
    assert canary not in caplog.text


async def _seed(services: Services, tenant: str, n: int, provider_id: str) -> None:
    """``n`` credentials with two connections each, written straight into the tenant."""
    expires = datetime.now(UTC) + timedelta(days=30)
    async with services.db.transaction(TenantScope.of(tenant)) as session:
        for i in range(n):
            credential = Credential(
                id=new_id("Credential"),
                tenant_id=tenant,
                name=f"key {i}",
                key_vault_ref=f"local://vault/secrets/{tenant}-key-{i}",
                auth_mode=AuthMode.API_KEY,
                current_version=uuid.uuid4().hex,
                expires_at=expires,
                rotation_strategy=RotationStrategy.EXTERNAL,
                cadence_days=90,
                expiry_warning_days=14,
            )
            session.add(credential)
            await session.flush()
            for j in range(2):
                session.add(
                    IntegrationConnection(
                        id=new_id("IntegrationConnection"),
                        tenant_id=tenant,
                        project_id="proj-1",
                        provider_id=provider_id,
                        name=f"{tenant} connection {i}.{j}",
                        status=ConnectionStatus.ACTIVE if j == 0 else ConnectionStatus.RETIRED,
                        auth_mode=AuthMode.API_KEY,
                        credential_id=credential.id,
                    )
                )


async def test_listing_with_connections_issues_a_constant_number_of_statements(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    db = server.services.db
    await load_catalogue(db)
    async with db.session(TenantScope.system_scope()) as session:
        deputy = (
            await session.execute(
                select(Provider).where(Provider.key == "deputy", Provider.tenant_id.is_(None))
            )
        ).scalar_one()
    await _seed(server.services, "small", 5, deputy.id)
    await _seed(server.services, "large", 50, deputy.id)

    statements: dict[int, int] = {}
    for tenant, n in (("small", 5), ("large", 50)):
        token = make_token(tenant=tenant, scopes="credentials:read connections:read")
        with db.count_statements() as counter:
            body = await gql(http, CREDENTIALS, token=token)
        assert "errors" not in body, body
        nodes = body["data"]["credentials"]["nodes"]
        assert len(nodes) == n
        for node in nodes:
            assert len(node["connections"]) == 2
            assert {c["status"] for c in node["connections"]} == {"ACTIVE", "RETIRED"}
            assert all(c["name"].startswith(f"{tenant} connection") for c in node["connections"])
        statements[n] = counter.count

    # The page, then every bound connection of the page in one batch.
    assert statements[5] == statements[50] == 2, statements
