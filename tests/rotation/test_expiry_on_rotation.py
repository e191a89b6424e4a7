"""A rotation keeps or sets the credential's expiry: the ``expiresAt`` asked for, else the
new vault version's, else the previous version's lifetime again. Before, an EXTERNAL
rotation to a version without a vault expiry left ``expiresAt`` null and the expiry alert
silently disappeared, and no mutation could set it again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.rotation.conftest import (
    ALERTS,
    CREDENTIAL,
    World,
    ok,
    register_credential,
    rotate,
)
from tests.support.graphql import gql
from tests.support.live import LiveServer

pytestmark = pytest.mark.backends

ROTATE_WITH = """
mutation ($input: RotateCredentialInput!) {
  rotateCredential(input: $input) {
    rotation { status newVersion }
    credential { id expiresAt }
    userErrors { field code message }
  }
}
"""


EXPIRES = "query ($id: ID!) { node(id: $id) { ... on Credential { expiresAt } } }"


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _alerts(http: httpx.AsyncClient, token: str, credential_id: str) -> list[Any]:
    alerts = (await ok(http, ALERTS, {}, token))["credentialExpiryAlerts"]
    return [
        (a["kind"], a["currentVersion"]) for a in alerts if a["credential"]["id"] == credential_id
    ]


async def test_external_rotation_keeps_the_previous_lifetime(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = server.services.vault, world.token
    expires = datetime.now(UTC) + timedelta(days=10)
    credential_id, _ = await register_credential(
        http, token, vault, "exp-key", "v1", warning=14, expires_at=expires.isoformat()
    )
    assert [k for k, _ in await _alerts(http, token, credential_id)] == ["EXPIRY"]
    new = await vault.set_secret("exp-key", "v2", tags={"studio-tenant": "acme"})  # no expiry
    payload = await rotate(http, token, credential_id)
    assert payload["rotation"]["status"] == "PROMOTED"
    after = _at(payload["credential"]["expiresAt"])
    # The same ~10-day lifetime, counted from the promotion.
    assert expires < after <= datetime.now(UTC) + timedelta(days=10)
    # The alert is still there, now for the new version.
    assert await _alerts(http, token, credential_id) == [("EXPIRY", new.version)]


async def test_the_vault_versions_expiry_is_taken_when_it_has_one(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = server.services.vault, world.token
    credential_id, _ = await register_credential(
        http,
        token,
        vault,
        "vexp-key",
        "v1",
        expires_at=(datetime.now(UTC) + timedelta(days=5)).isoformat(),
    )
    vault_expiry = (datetime.now(UTC) + timedelta(days=200)).replace(microsecond=0)
    await vault.set_secret(
        "vexp-key", "v2", tags={"studio-tenant": "acme"}, expires_at=vault_expiry
    )
    payload = await rotate(http, token, credential_id)
    assert _at(payload["credential"]["expiresAt"]) == vault_expiry
    assert await _alerts(http, token, credential_id) == []  # 200 days: outside the window


async def test_rotate_credential_sets_the_expiry_it_is_given(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = server.services.vault, world.token
    credential_id, _ = await register_credential(http, token, vault, "set-key", "v1")
    await vault.set_secret("set-key", "v2", tags={"studio-tenant": "acme"})
    wanted = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    data = await ok(
        http,
        ROTATE_WITH,
        {"input": {"credentialId": credential_id, "expiresAt": wanted.isoformat()}},
        token,
    )
    payload = data["rotateCredential"]
    assert payload["userErrors"] == [] and payload["rotation"]["status"] == "PROMOTED"
    assert _at(payload["credential"]["expiresAt"]) == wanted
    assert [k for k, _ in await _alerts(http, token, credential_id)] == ["EXPIRY"]
    node = (await ok(http, EXPIRES, {"id": credential_id}, token))["node"]
    assert _at(node["expiresAt"]) == wanted


async def test_an_expiry_in_the_past_is_refused_and_nothing_rotates(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = server.services.vault, world.token
    credential_id, version = await register_credential(http, token, vault, "past-key", "v1")
    await vault.set_secret("past-key", "v2", tags={"studio-tenant": "acme"})
    body = await gql(
        http,
        ROTATE_WITH,
        {"input": {"credentialId": credential_id, "expiresAt": "2001-01-01T00:00:00Z"}},
        token=token,
    )
    payload = body["data"]["rotateCredential"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("input.expiresAt", "IN_THE_PAST")
    ]
    node = (await ok(http, CREDENTIAL, {"id": credential_id}, token))["node"]
    assert node["currentVersion"] == version


async def test_the_rest_alias_accepts_expires_at(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault, token = server.services.vault, world.token
    credential_id, _ = await register_credential(http, token, vault, "rest-key", "v1")
    await vault.set_secret("rest-key", "v2", tags={"studio-tenant": "acme"})
    wanted = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    response = await http.post(
        "/integrations/credentials/rotate",
        json={"credentialId": credential_id, "expiresAt": wanted.isoformat()},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    assert _at(response.json()["credential"]["expiresAt"]) == wanted
    past = await http.post(
        "/integrations/credentials/rotate",
        json={"credentialId": credential_id, "expiresAt": "2001-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert past.status_code == 422, past.text
    assert past.json()["userErrors"][0]["code"] == "IN_THE_PAST"
    extra = await http.post(
        "/integrations/credentials/rotate",
        json={"credentialId": credential_id, "other": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert extra.status_code == 400
