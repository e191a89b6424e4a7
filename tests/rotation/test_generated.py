"""GENERATED rotation: the server writes a strong random value into the vault as a new,
tenant-tagged version and promotes it after verification. The value is a canary: it must not
appear in any response, log line, audit event or outbox row."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import (
    AuditEvent,
    CredentialRotation,
    IntegrationFailure,
    IntegrationRun,
    OutboxMessage,
    RunAttempt,
)
from studio_integrations.services import Services
from tests.fakes.provider import Reply
from tests.rotation.conftest import (
    AUDIT,
    CREDENTIAL,
    ROTATE,
    ROTATION_NODE,
    TEST,
    World,
    establish,
    register_credential,
)
from tests.support.live import LiveServer

GEN_PATH = "/v1/accounts/acme-gen/me"


async def _all_rows_text(services: Services) -> str:
    """Every audit event, outbox row, run, attempt, failure and rotation, as text."""
    parts: list[str] = []
    async with services.db.session(TenantScope.system_scope()) as session:
        for model in (
            AuditEvent,
            OutboxMessage,
            IntegrationRun,
            RunAttempt,
            IntegrationFailure,
            CredentialRotation,
        ):
            for row in (await session.execute(select(model))).scalars():
                parts.append(
                    json.dumps({c.key: str(getattr(row, c.key)) for c in model.__table__.columns})
                )
    return "\n".join(parts)


async def test_generated_version_is_written_promoted_and_never_shown(
    server: LiveServer, http: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault, token = server.services.vault, world.token
    world.fake.on(GEN_PATH, Reply(json={"id": 9}))  # accepts any key
    credential_id, first_version = await register_credential(
        http, token, vault, "signing-secret", "initial-seed-value", strategy="GENERATED"
    )
    connection_id = await establish(
        http, world, credential_id, name="Signing", configuration={"account": "acme-gen"}
    )

    texts: list[str] = []

    async def call(query: str, variables: dict[str, str]) -> dict:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        texts.append(response.text)
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    payload = (await call(ROTATE, {"id": credential_id}))["rotateCredential"]
    assert payload["userErrors"] == []
    rotation = payload["rotation"]
    assert rotation["status"] == "PROMOTED", rotation
    assert rotation["previousVersion"] == first_version
    new_version = rotation["newVersion"]
    assert new_version and new_version != first_version
    assert payload["credential"]["currentVersion"] == new_version
    (run,) = rotation["verificationRuns"]
    assert (run["connectionId"], run["status"], run["credentialVersion"]) == (
        connection_id,
        "SUCCEEDED",
        new_version,
    )

    # The vault holds the new version, tagged for the tenant and the rotation.
    versions = await vault.list_versions("signing-secret")
    assert [v.version for v in versions] == [first_version, new_version]
    assert versions[-1].tags == {"studio-tenant": "acme", "studio-rotation": rotation["id"]}
    canary = (await vault.get_secret("signing-secret", new_version)).value
    assert len(canary) >= 43 and canary != "initial-seed-value"  # ≥ 32 random bytes
    # The provider got it (it is the outside world the secret is for)...
    assert world.fake.seen(GEN_PATH)[-1].headers["x-api-key"] == canary

    # ...and the next test uses it.
    await call(TEST, {"id": connection_id})
    assert world.fake.seen(GEN_PATH)[-1].headers["x-api-key"] == canary

    # Everything a client can read about it.
    await call(ROTATION_NODE, {"id": rotation["id"]})
    await call(CREDENTIAL, {"id": credential_id})
    await call(AUDIT, {"subjectId": credential_id})
    response = await http.post(
        "/integrations/credentials/rotate",
        json={"credentialId": credential_id},
        headers={"Authorization": f"Bearer {token}"},
    )
    texts.append(response.text)
    assert response.json()["rotation"]["status"] == "PROMOTED"
    second = (await vault.list_versions("signing-secret"))[-1]
    second_value = (await vault.get_secret("signing-secret", second.version)).value

    for secret in (canary, second_value):
        for text in texts:
            assert secret not in text
        assert secret not in caplog.text
        assert secret not in await _all_rows_text(server.services)
    assert caplog.records  # the log was captured (the search above searched something)


async def test_generated_without_connections_is_promoted_at_once(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = services.vault, world.token
    credential_id, first = await register_credential(
        http, token, vault, "lonely-secret", "seed", strategy="GENERATED"
    )
    response = await http.post(
        "/graphql",
        json={"query": ROTATE, "variables": {"id": credential_id}},
        headers={"Authorization": f"Bearer {token}"},
    )
    rotation = response.json()["data"]["rotateCredential"]["rotation"]
    assert rotation["status"] == "PROMOTED"
    assert rotation["verificationRuns"] == []
    assert rotation["previousVersion"] == first
    assert (await vault.list_versions("lonely-secret"))[-1].version == rotation["newVersion"]


async def test_a_rejected_generated_version_is_disabled_and_the_old_one_kept(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = services.vault, world.token
    world.fake.on(GEN_PATH, Reply(json={"id": 9}))
    accepted = world.fake.require_key(GEN_PATH, {"initial-seed-value"})
    credential_id, first = await register_credential(
        http, token, vault, "picky-secret", "initial-seed-value", strategy="GENERATED"
    )
    connection_id = await establish(
        http, world, credential_id, name="Picky", configuration={"account": "acme-gen"}
    )
    response = await http.post(
        "/graphql",
        json={"query": ROTATE, "variables": {"id": credential_id}},
        headers={"Authorization": f"Bearer {token}"},
    )
    payload = response.json()["data"]["rotateCredential"]
    rotation = payload["rotation"]
    assert rotation["status"] == "FAILED"
    assert payload["credential"]["currentVersion"] == first
    versions = {v.version: v for v in await vault.list_versions("picky-secret")}
    assert versions[rotation["newVersion"]].enabled is False
    assert versions[first].enabled is True
    # The connection still works on the old version.
    response = await http.post(
        "/graphql",
        json={"query": TEST, "variables": {"id": connection_id}},
        headers={"Authorization": f"Bearer {token}"},
    )
    run = response.json()["data"]["testConnection"]["run"]
    assert (run["status"], run["credentialVersion"]) == ("SUCCEEDED", first)
    assert accepted == {"initial-seed-value"}
