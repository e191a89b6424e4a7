"""registerCredential and credentials over GraphQL: pinning, listing, tenancy, guards, audit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.credentials.conftest import (
    AUDIT,
    CREDENTIALS,
    LOCAL_REF,
    NODE,
    REGISTER_CREDENTIAL,
    SECRET,
    Counts,
    counts,
    credential_input,
    in_days,
    put_secret,
)
from tests.support.graphql import error_codes, gql


async def register(http: httpx.AsyncClient, token: str, **overrides: Any) -> dict[str, Any]:
    body = await gql(
        http, REGISTER_CREDENTIAL, {"input": credential_input(**overrides)}, token=token
    )
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["registerCredential"]
    return payload


async def list_credentials(http: httpx.AsyncClient, token: str, **flt: Any) -> list[dict[str, Any]]:
    body = await gql(http, CREDENTIALS, {"filter": flt or None}, token=token)
    assert "errors" not in body, body
    nodes: list[dict[str, Any]] = body["data"]["credentials"]["nodes"]
    return nodes


async def test_register_pins_the_newest_enabled_version_and_lists_metadata(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    vault = services.vault
    await put_secret(vault, value="first")
    newest = await put_secret(vault, value="second")
    token = make_token(tenant="acme")

    payload = await register(http, token)

    assert payload["userErrors"] == []
    credential = payload["credential"]
    assert credential["id"].startswith("cred_")
    assert credential["keyVaultRef"] == LOCAL_REF
    assert credential["currentVersion"] == newest.version
    assert (credential["authMode"], credential["rotationStrategy"]) == ("API_KEY", "EXTERNAL")
    assert credential["rotationPolicy"] == {"cadenceDays": 90, "expiryWarningDays": 14}
    assert credential["name"] == "Deputy production key"
    assert credential["lastRotatedAt"] is None
    assert credential["expiresAt"] is not None
    assert credential["connections"] == []
    assert credential["viewerCan"] == {"rotate": True, "setRotationPolicy": True}

    listed = await list_credentials(http, token)
    assert listed == [credential]
    node = await gql(http, NODE, {"id": credential["id"]}, token=token)
    assert node["data"]["node"] == credential

    audit = await gql(http, AUDIT, {"subjectId": credential["id"]}, token=token)
    events = audit["data"]["auditEvents"]["nodes"]
    assert [e["type"] for e in events] == ["CredentialRegistered"]
    assert events[0]["data"]["keyVaultRef"] == LOCAL_REF
    assert events[0]["data"]["authMode"] == "API_KEY"
    assert events[0]["data"]["currentVersion"] == newest.version
    assert await counts(services.db) == Counts(credentials=1, audit_events=1, outbox=1)


async def test_a_versioned_reference_pins_that_version(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    vault = services.vault
    older = await put_secret(vault, value="first")
    await put_secret(vault, value="second")

    payload = await register(http, make_token(), keyVaultRef=f"{LOCAL_REF}/{older.version}")

    assert payload["userErrors"] == []
    # The reference is kept unversioned; the version is the pin.
    assert payload["credential"]["keyVaultRef"] == LOCAL_REF
    assert payload["credential"]["currentVersion"] == older.version


async def test_a_disabled_newest_version_is_skipped(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    vault = services.vault
    enabled = await put_secret(vault, value="first")
    disabled = await put_secret(vault, value="second")
    await vault.update_properties(SECRET, disabled.version, enabled=False)

    payload = await register(http, make_token())

    assert payload["userErrors"] == []
    assert payload["credential"]["currentVersion"] == enabled.version


async def test_rotation_policy_and_name_defaults(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    await put_secret(services.vault)
    payload = await register(
        http,
        make_token(scopes="credentials:read credentials:write connections:read"),
        name=None,
        expiresAt=None,
        rotationStrategy="GENERATED",
        authMode="BEARER_TOKEN",
        rotationPolicy={"cadenceDays": 730, "expiryWarningDays": 365},
    )
    assert payload["userErrors"] == []
    credential = payload["credential"]
    assert credential["name"] == SECRET
    assert credential["expiresAt"] is None
    assert credential["rotationPolicy"] == {"cadenceDays": 730, "expiryWarningDays": 365}
    # credentials:write alone does not allow a rotation.
    assert credential["viewerCan"] == {"rotate": False, "setRotationPolicy": True}


async def test_filters(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    vault = services.vault
    token = make_token()
    for name in ("deputy-key", "braze-token", "bill-basic"):
        await put_secret(vault, name)
    await register(
        http,
        token,
        keyVaultRef="local://vault/secrets/deputy-key",
        name="Deputy",
        expiresAt=in_days(5),
    )
    await register(
        http,
        token,
        keyVaultRef="local://vault/secrets/braze-token",
        name="Braze",
        authMode="BEARER_TOKEN",
        rotationStrategy="GENERATED",
        expiresAt=in_days(60),
    )
    await register(
        http,
        token,
        keyVaultRef="local://vault/secrets/bill-basic",
        name="Bill",
        authMode="BASIC",
        expiresAt=None,
    )

    def names(nodes: list[dict[str, Any]]) -> list[str]:
        return [n["name"] for n in nodes]

    assert names(await list_credentials(http, token)) == ["Bill", "Braze", "Deputy"]  # newest first
    assert names(await list_credentials(http, token, authMode="BEARER_TOKEN")) == ["Braze"]
    assert names(await list_credentials(http, token, rotationStrategy="EXTERNAL")) == [
        "Bill",
        "Deputy",
    ]
    assert names(await list_credentials(http, token, search="BRAZE")) == ["Braze"]
    assert names(await list_credentials(http, token, search="bill-basic")) == ["Bill"]
    assert names(await list_credentials(http, token, expiringWithinDays=30)) == ["Deputy"]
    assert names(await list_credentials(http, token, expiringWithinDays=90)) == ["Braze", "Deputy"]

    page = await gql(http, CREDENTIALS, {"first": 2}, token=token)
    first = page["data"]["credentials"]
    assert names(first["nodes"]) == ["Bill", "Braze"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await gql(
        http, CREDENTIALS, {"first": 2, "after": first["pageInfo"]["endCursor"]}, token=token
    )
    assert names(rest["data"]["credentials"]["nodes"]) == ["Deputy"]

    bad = await gql(http, CREDENTIALS, {"filter": {"expiringWithinDays": -1}}, token=token)
    assert bad["data"]["credentials"] is None
    assert error_codes(bad) == ["OUT_OF_RANGE"]
    assert bad["errors"][0]["extensions"]["field"] == "filter.expiringWithinDays"
    long = await gql(http, CREDENTIALS, {"filter": {"search": "x" * 201}}, token=token)
    assert error_codes(long) == ["TOO_LONG"]


async def test_tenant_isolation_of_list_and_node(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    vault = services.vault
    await put_secret(vault, "acme-key", tenant="acme")
    await put_secret(vault, "globex-key", tenant="globex")
    acme, globex = make_token(tenant="acme"), make_token(tenant="globex")
    mine = await register(http, acme, keyVaultRef="local://vault/secrets/acme-key")
    theirs = await register(http, globex, keyVaultRef="local://vault/secrets/globex-key")
    assert mine["userErrors"] == [] and theirs["userErrors"] == []

    assert [c["id"] for c in await list_credentials(http, acme)] == [mine["credential"]["id"]]
    assert [c["id"] for c in await list_credentials(http, globex)] == [theirs["credential"]["id"]]
    foreign = await gql(http, NODE, {"id": theirs["credential"]["id"]}, token=acme)
    assert foreign == {"data": {"node": None}}
    unknown = await gql(http, NODE, {"id": "cred_01JD8ZZZZZZZZZZZZZZZZZZZZZ"}, token=acme)
    assert unknown == foreign


@pytest.mark.parametrize("scopes", ["credentials:read", "providers:write audit:read"])
async def test_register_without_credentials_write_is_forbidden_and_writes_nothing(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory, scopes: str
) -> None:
    await put_secret(services.vault)
    before = await counts(services.db)
    body = await gql(
        http,
        REGISTER_CREDENTIAL,
        {"input": credential_input()},
        token=make_token(scopes=scopes),
    )
    assert body["data"]["registerCredential"] is None
    assert error_codes(body) == ["FORBIDDEN"]
    assert await counts(services.db) == before


async def test_reading_without_credentials_read_is_forbidden_field_by_field(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    await put_secret(services.vault)
    payload = await register(http, make_token())
    credential_id = payload["credential"]["id"]
    token = make_token(scopes="credentials:write providers:read")

    body = await gql(
        http,
        "query ($id: ID!) { credentials { nodes { id } } node(id: $id) { id } viewer { tenantId } }",
        {"id": credential_id},
        token=token,
    )

    assert body["data"]["credentials"] is None
    assert body["data"]["node"] is None
    assert body["data"]["viewer"] == {"tenantId": "acme"}
    assert sorted(error_codes(body)) == ["FORBIDDEN", "FORBIDDEN"]
