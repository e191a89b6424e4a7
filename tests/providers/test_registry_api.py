"""providers / apiClients / node over GraphQL: the catalogue, registration, tenancy, audit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update

from studio_integrations.core.errors import TenantWriteViolation
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import Provider
from studio_integrations.seed.catalogue import CatalogueLoad
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.providers.conftest import (
    API_CLIENTS,
    CATALOGUE_KEYS,
    PROVIDERS,
    REGISTER_API_CLIENT,
    REGISTER_PROVIDER,
    counts,
    provider_input,
)
from tests.support.graphql import error_codes, gql

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"

AUDIT = """
query ($subjectId: ID) {
  auditEvents(filter: {subjectId: $subjectId}) {
    nodes { type traceId actor { subject kind name } subject { type id } data }
  }
}
"""
NODE = """
query ($id: ID!) {
  node(id: $id) {
    id
    ... on Provider { key global }
    ... on ExternalApiClient { version provider { key } }
  }
}
"""


async def _providers(http: httpx.AsyncClient, token: str, **flt: Any) -> list[dict[str, Any]]:
    body = await gql(http, PROVIDERS, {"filter": flt or None}, token=token)
    assert "errors" not in body, body
    nodes: list[dict[str, Any]] = body["data"]["providers"]["nodes"]
    return nodes


async def _register_provider(
    http: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    body = await gql(
        http,
        REGISTER_PROVIDER,
        {"input": provider_input(**overrides)},
        token=token,
        headers=headers,
    )
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["registerProvider"]
    return payload


async def _register_client(
    http: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    body = await gql(http, REGISTER_API_CLIENT, {"input": fields}, token=token, headers=headers)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["registerApiClient"]
    return payload


async def test_the_catalogue_lists_every_provider_with_its_api_clients(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    nodes = await _providers(http, make_token(scopes="providers:read"))
    by_key = {n["key"]: n for n in nodes}
    assert set(by_key) == CATALOGUE_KEYS
    assert all(n["global"] and n["readyToUse"] for n in nodes)
    assert all(n["viewerCan"] == {"registerApiClient": False} for n in nodes)

    deputy = by_key["deputy"]
    assert deputy["category"] == "HR"
    assert deputy["baseUrl"] == "https://{install}.{geo}.deputy.com"
    assert deputy["verification"] == {"method": "GET", "path": "/api/v1/me", "expectStatus": 200}
    assert deputy["configurationSchema"]["properties"]["geo"]["enum"] == ["au", "uk", "na"]
    assert deputy["latencyThresholdMs"] == 1500
    assert "timesheets.write" in deputy["capabilities"]
    # SemVer precedence, not string order: 2.0.0-rc.1 > 1.10.0 > 1.9.0.
    assert [c["version"] for c in deputy["apiClients"]] == ["2.0.0-rc.1", "1.10.0", "1.9.0"]
    assert [c["readyToUse"] for c in deputy["apiClients"]] == [False, True, False]

    expected = {
        "deputy": "ConnectSoft.Deputy.ApiClient",
        "braze": "ConnectSoft.Braze.ApiClient",
        "bill": "ConnectSoft.Bill.ApiClient",
        "twilio": "ConnectSoft.Twilio.ApiClient",
        "vonage": "ConnectSoft.Vonage.ApiClient",
        "sinch": "ConnectSoft.Sinch.ApiClient",
        "messagebird": "ConnectSoft.MessageBird.ApiClient",
    }
    for key, assembly in expected.items():
        ready = [c for c in by_key[key]["apiClients"] if c["status"] == "IMPLEMENTED"]
        assert [c["assembly"] for c in ready] == [assembly], key
        assert set(ready[0]["capabilities"]) <= set(by_key[key]["capabilities"])
    assert by_key["twilio"]["authModes"] == ["BASIC"]
    assert by_key["braze"]["authModes"] == ["BEARER_TOKEN"]
    assert {by_key[k]["category"] for k in ("twilio", "vonage", "sinch", "messagebird")} == {"SMS"}


async def test_provider_filters(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    token = make_token(tenant="acme")
    own = await _register_provider(http, token)
    assert own["userErrors"] == []

    def keys(nodes: list[dict[str, Any]]) -> set[str]:
        return {n["key"] for n in nodes}

    assert keys(await _providers(http, token, category="SMS")) == {
        "twilio",
        "vonage",
        "sinch",
        "messagebird",
    }
    assert keys(await _providers(http, token, capability="invoices.sync")) == {"bill"}
    assert keys(await _providers(http, token, capability="employees.write")) == {
        "deputy",
        "acme-hr",
    }
    assert keys(await _providers(http, token, search="DEPUT")) == {"deputy"}
    assert keys(await _providers(http, token, search="in-house")) == {"acme-hr"}
    assert keys(await _providers(http, token, search="%")) == set()  # LIKE wildcards escaped
    assert keys(await _providers(http, token, includeGlobal=False)) == {"acme-hr"}
    assert keys(await _providers(http, token, status="DEPRECATED")) == set()
    assert len(await _providers(http, token)) == 8
    bad = await gql(http, PROVIDERS, {"filter": {"capability": "Not A Token"}}, token=token)
    assert error_codes(bad) == ["INVALID_CAPABILITY"]


async def test_registrations_are_invisible_to_other_tenants_and_audited(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    acme = make_token(tenant="acme", subject="alice", name="Alice", scopes="all")
    globex = make_token(tenant="globex", subject="gary", scopes="all")
    traced = {"traceparent": TRACEPARENT}

    registered = await _register_provider(http, acme, headers=traced)
    assert registered["userErrors"] == []
    provider = registered["provider"]
    assert provider["global"] is False
    assert provider["readyToUse"] is False  # no implemented client yet
    assert provider["viewerCan"] == {"registerApiClient": True}
    client_payload = await _register_client(
        http,
        acme,
        headers=traced,
        providerId=provider["id"],
        assembly="Acme.Hr.ApiClient",
        version="1.0.0",
        capabilities=["employees.read"],
        status="IMPLEMENTED",
    )
    assert client_payload["userErrors"] == []
    client = client_payload["apiClient"]
    assert client["provider"] == {"id": provider["id"], "key": "acme-hr"}
    assert client["readyToUse"] is True

    # Tenant A sees both; tenant B sees neither, by any route.
    assert "acme-hr" in {n["key"] for n in await _providers(http, acme)}
    assert "acme-hr" not in {n["key"] for n in await _providers(http, globex)}
    assert "acme-hr" not in {n["key"] for n in await _providers(http, globex, search="acme")}
    for id_ in (provider["id"], client["id"]):
        assert (await gql(http, NODE, {"id": id_}, token=globex)) == {"data": {"node": None}}
        assert (await gql(http, NODE, {"id": id_}, token=acme))["data"]["node"]["id"] == id_
    clients_b = await gql(
        http, API_CLIENTS, {"filter": {"providerId": provider["id"]}}, token=globex
    )
    assert clients_b["data"]["apiClients"]["edges"] == []
    clients_a = await gql(http, API_CLIENTS, {"filter": {"providerId": provider["id"]}}, token=acme)
    assert [e["node"]["id"] for e in clients_a["data"]["apiClients"]["edges"]] == [client["id"]]
    # Another tenant's provider id behaves exactly like one that does not exist.
    before = await counts(services.db)
    stolen = await _register_client(
        http,
        globex,
        providerId=provider["id"],
        assembly="Globex.ApiClient",
        version="1.0.0",
        capabilities=["employees.read"],
    )
    assert stolen["apiClient"] is None
    assert [(e["field"], e["code"]) for e in stolen["userErrors"]] == [
        ("input.providerId", "PROVIDER_NOT_FOUND")
    ]
    assert await counts(services.db) == before
    # ... and B may reuse A's key: keys are unique within a tenant.
    assert (await _register_provider(http, globex))["userErrors"] == []

    # Audited with actor and the request's trace id, in A's log only.
    for subject_id, event_type in (
        (provider["id"], "ProviderRegistered"),
        (client["id"], "ExternalApiClientRegistered"),
    ):
        events = (await gql(http, AUDIT, {"subjectId": subject_id}, token=acme))["data"]
        [event] = events["auditEvents"]["nodes"]
        assert event["type"] == event_type
        assert event["traceId"] == TRACE_ID
        assert event["actor"] == {"subject": "alice", "kind": "USER", "name": "Alice"}
        assert event["subject"]["id"] == subject_id
        theirs = (await gql(http, AUDIT, {"subjectId": subject_id}, token=globex))["data"]
        assert theirs["auditEvents"]["nodes"] == []
    data = (await gql(http, AUDIT, {"subjectId": client["id"]}, token=acme))["data"]
    assert data["auditEvents"]["nodes"][0]["data"]["version"] == "1.0.0"


async def test_global_providers_cannot_be_modified_by_a_tenant(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    token = make_token(tenant="acme", scopes="all")
    twilio = next(n for n in await _providers(http, token) if n["key"] == "twilio")
    before = await counts(services.db)

    extra = await _register_client(
        http,
        token,
        providerId=twilio["id"],
        assembly="ConnectSoft.Twilio.ApiClient",
        version="9.0.0",
        capabilities=["messages.send"],
    )
    assert [(e["field"], e["code"]) for e in extra["userErrors"]] == [
        ("input.providerId", "GLOBAL_PROVIDER_READ_ONLY")
    ]
    shadow = await _register_provider(http, token, key="twilio")
    assert [(e["field"], e["code"]) for e in shadow["userErrors"]] == [
        ("input.key", "SHADOWS_GLOBAL_KEY")
    ]
    assert await counts(services.db) == before

    # Below GraphQL too: the tenant guard refuses any write to a global row.
    with pytest.raises(TenantWriteViolation):
        async with services.db.transaction(TenantScope.of("acme")) as session:
            row = await session.get(Provider, twilio["id"])
            assert row is not None
            row.name = "Hijacked"
    async with services.db.transaction(TenantScope.of("acme")) as session:
        result = await session.execute(
            update(Provider).where(Provider.id == twilio["id"]).values(name="Hijacked")
        )
        assert result.rowcount == 0  # type: ignore[attr-defined]
    again = next(n for n in await _providers(http, token) if n["key"] == "twilio")
    assert again["name"] == "Twilio"


async def test_writes_need_providers_write_and_reads_need_providers_read(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    reader = make_token(scopes="providers:read audit:read")
    before = await counts(services.db)
    body = await gql(http, REGISTER_PROVIDER, {"input": provider_input()}, token=reader)
    assert body["data"] == {"registerProvider": None}
    assert error_codes(body) == ["FORBIDDEN"]
    deputy = next(n for n in await _providers(http, reader) if n["key"] == "deputy")
    body = await gql(
        http,
        REGISTER_API_CLIENT,
        {
            "input": {
                "providerId": deputy["id"],
                "assembly": "X.Y",
                "version": "1.0.0",
                "capabilities": ["employees.read"],
            }
        },
        token=reader,
    )
    assert body["data"] == {"registerApiClient": None}
    assert error_codes(body) == ["FORBIDDEN"]
    assert await counts(services.db) == before

    outsider = make_token(scopes="health:read")
    body = await gql(
        http,
        "{ viewer { subject } providers { nodes { id } } apiClients { nodes { id } } "
        "capabilityMatrix { capabilities } }",
        token=outsider,
    )
    assert body["data"] == {
        "viewer": {"subject": "alice"},
        "providers": None,
        "apiClients": None,
        "capabilityMatrix": None,
    }
    assert error_codes(body) == ["FORBIDDEN"] * 3
    node = await gql(http, NODE, {"id": deputy["id"]}, token=outsider)
    assert node["data"]["node"] is None
    assert error_codes(node) == ["FORBIDDEN"]


async def test_clients_are_listed_in_semver_order_and_paginate(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token(scopes="providers:read providers:write")
    provider = (await _register_provider(http, token))["provider"]
    versions = ["1.9.0", "2.0.0", "1.10.0", "2.0.0-rc.1", "1.0.0-alpha", "2.0.0-rc.2", "1.0.0"]
    for version in versions:
        payload = await _register_client(
            http,
            token,
            providerId=provider["id"],
            assembly="Acme.Hr.ApiClient",
            version=version,
            capabilities=["employees.read"],
        )
        assert payload["userErrors"] == [], version
    await _register_client(
        http,
        token,
        providerId=provider["id"],
        assembly="Acme.Hr.Admin",
        version="0.1.0",
        capabilities=["employees.write"],
    )
    expected = [
        ("Acme.Hr.Admin", "0.1.0"),
        ("Acme.Hr.ApiClient", "2.0.0"),
        ("Acme.Hr.ApiClient", "2.0.0-rc.2"),
        ("Acme.Hr.ApiClient", "2.0.0-rc.1"),
        ("Acme.Hr.ApiClient", "1.10.0"),
        ("Acme.Hr.ApiClient", "1.9.0"),
        ("Acme.Hr.ApiClient", "1.0.0"),
        ("Acme.Hr.ApiClient", "1.0.0-alpha"),
    ]
    flt = {"providerId": provider["id"]}
    body = await gql(http, API_CLIENTS, {"filter": flt}, token=token)
    listed = [
        (e["node"]["assembly"], e["node"]["version"]) for e in body["data"]["apiClients"]["edges"]
    ]
    assert listed == expected

    paged: list[tuple[str, str]] = []
    after: str | None = None
    while True:
        body = await gql(
            http, API_CLIENTS, {"filter": flt, "first": 3, "after": after}, token=token
        )
        conn = body["data"]["apiClients"]
        paged += [(e["node"]["assembly"], e["node"]["version"]) for e in conn["edges"]]
        assert conn["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert paged == expected

    nested = next(n for n in await _providers(http, token) if n["id"] == provider["id"])
    assert [(c["assembly"], c["version"]) for c in nested["apiClients"]] == expected

    only = await gql(
        http, API_CLIENTS, {"filter": {**flt, "assembly": "Acme.Hr.Admin"}}, token=token
    )
    assert len(only["data"]["apiClients"]["edges"]) == 1
    bad_cursor = await gql(http, API_CLIENTS, {"filter": flt, "after": "bm9wZQ"}, token=token)
    assert error_codes(bad_cursor) == ["INVALID_CURSOR"]
