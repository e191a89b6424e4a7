"""Every bad input: a userErrors entry with field and code, nothing written, no event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from studio_integrations.seed.catalogue import load_catalogue
from tests.conftest import SharedApp
from tests.providers.conftest import (
    PROVIDERS,
    REGISTER_API_CLIENT,
    REGISTER_PROVIDER,
    counts,
    provider_input,
)
from tests.support.graphql import gql

UNKNOWN_PROVIDER_ID = "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ"


@dataclass(frozen=True)
class World:
    token: str
    own_provider_id: str
    other_tenant_provider_id: str
    global_provider_id: str


# The cases only prove that nothing changes: one world per back end serves the module.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(shared: SharedApp) -> World:
    """acme owns `acme-hr` with client 1.0.0; globex owns `globex-hr`."""
    await load_catalogue(shared.services.db)
    http, make_token = shared.http, shared.make_token
    acme = make_token(tenant="acme", scopes="providers:read providers:write")
    globex = make_token(tenant="globex", scopes="providers:read providers:write")
    own = await gql(http, REGISTER_PROVIDER, {"input": provider_input()}, token=acme)
    own_id = own["data"]["registerProvider"]["provider"]["id"]
    client = await gql(
        http,
        REGISTER_API_CLIENT,
        {
            "input": {
                "providerId": own_id,
                "assembly": "Acme.Hr.ApiClient",
                "version": "1.0.0",
                "capabilities": ["employees.read"],
            }
        },
        token=acme,
    )
    assert client["data"]["registerApiClient"]["userErrors"] == []
    other = await gql(
        http, REGISTER_PROVIDER, {"input": provider_input(key="globex-hr")}, token=globex
    )
    listed = await gql(http, PROVIDERS, {"filter": {"search": "deputy"}}, token=acme)
    return World(
        token=acme,
        own_provider_id=own_id,
        other_tenant_provider_id=other["data"]["registerProvider"]["provider"]["id"],
        global_provider_id=listed["data"]["providers"]["nodes"][0]["id"],
    )


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


ProviderCase = tuple[dict[str, Any], list[tuple[str, str]]]

PROVIDER_CASES: dict[str, ProviderCase] = {
    "key-invalid": ({"key": "Acme HR"}, [("input.key", "INVALID_KEY")]),
    "key-blank": ({"key": "  "}, [("input.key", "REQUIRED")]),
    "key-too-long": ({"key": "a" * 65}, [("input.key", "INVALID_KEY")]),
    "key-duplicate": ({"key": "acme-hr"}, [("input.key", "DUPLICATE_KEY")]),
    "key-shadows-global": ({"key": "deputy"}, [("input.key", "SHADOWS_GLOBAL_KEY")]),
    "name-blank": ({"name": ""}, [("input.name", "REQUIRED")]),
    "name-too-long": ({"name": "n" * 201}, [("input.name", "TOO_LONG")]),
    "description-too-long": ({"description": "d" * 2001}, [("input.description", "TOO_LONG")]),
    "capability-uppercase": (
        {"capabilities": ["Employees.Read"]},
        [("input.capabilities", "INVALID_CAPABILITY")],
    ),
    "capability-no-action": (
        {"capabilities": ["employees"]},
        [("input.capabilities", "INVALID_CAPABILITY")],
    ),
    "capability-too-long": (
        {"capabilities": ["a." + "b" * 100]},
        [("input.capabilities", "INVALID_CAPABILITY")],
    ),
    "capabilities-empty": ({"capabilities": []}, [("input.capabilities", "REQUIRED")]),
    "capabilities-too-many": (
        {"capabilities": [f"r{i}.read" for i in range(101)]},
        [("input.capabilities", "TOO_MANY")],
    ),
    "auth-modes-empty": ({"authModes": []}, [("input.authModes", "REQUIRED")]),
    "schema-invalid": (
        {"configurationSchema": {"type": "object", "properties": {"x": {"type": "nope"}}}},
        [("input.configurationSchema", "INVALID_JSON_SCHEMA")],
    ),
    "schema-invalid-keyword-value": (
        {"configurationSchema": {"type": "object", "required": "tenantHost"}},
        [("input.configurationSchema", "INVALID_JSON_SCHEMA")],
    ),
    "schema-not-an-object": (
        {"configurationSchema": ["type", "object"]},
        [("input.configurationSchema", "INVALID_JSON_SCHEMA")],
    ),
    "schema-not-for-an-object": (
        {"configurationSchema": {"type": "string"}},
        [("input.configurationSchema", "INVALID_JSON_SCHEMA")],
    ),
    "schema-unknown-dialect": (
        {"configurationSchema": {"$schema": "https://example.com/my-dialect", "type": "object"}},
        [("input.configurationSchema", "INVALID_JSON_SCHEMA")],
    ),
    "schema-too-large": (
        {
            "baseUrl": "https://hr.acme.example",
            "configurationSchema": {
                "type": "object",
                "properties": {f"p{i}": {"description": "x" * 100} for i in range(400)},
            },
        },
        [("input.configurationSchema", "TOO_LARGE")],
    ),
    "schema-too-deep": (
        {"baseUrl": "https://hr.acme.example", "configurationSchema": _nested(20)},
        [("input.configurationSchema", "TOO_LARGE")],
    ),
    "base-url-not-http": ({"baseUrl": "ftp://hr.acme.example"}, [("input.baseUrl", "INVALID_URL")]),
    "base-url-relative": ({"baseUrl": "/api"}, [("input.baseUrl", "INVALID_URL")]),
    "base-url-credentials": (
        {"baseUrl": "https://user:secret@hr.acme.example"},
        [("input.baseUrl", "INVALID_URL")],
    ),
    "base-url-query": (
        {"baseUrl": "https://hr.acme.example?key=1"},
        [("input.baseUrl", "INVALID_URL")],
    ),
    "base-url-unknown-placeholder": (
        {"baseUrl": "https://{region}.acme.example"},
        [("input.baseUrl", "UNKNOWN_PLACEHOLDER")],
    ),
    "path-relative": (
        {"verification": {"method": "GET", "path": "v2/me", "expectStatus": 200}},
        [("input.verification.path", "INVALID_PATH")],
    ),
    "path-unknown-placeholder": (
        {"verification": {"method": "GET", "path": "/users/{userId}", "expectStatus": 200}},
        [("input.verification.path", "UNKNOWN_PLACEHOLDER")],
    ),
    "method-unsafe": (
        {"verification": {"method": "DELETE", "path": "/v2/me", "expectStatus": 200}},
        [("input.verification.method", "INVALID_METHOD")],
    ),
    "expect-status-not-2xx": (
        {"verification": {"method": "GET", "path": "/v2/me", "expectStatus": 404}},
        [("input.verification.expectStatus", "INVALID_STATUS")],
    ),
    "latency-threshold-out-of-range": (
        {"latencyThresholdMs": 0},
        [("input.latencyThresholdMs", "OUT_OF_RANGE")],
    ),
    "documentation-url-invalid": (
        {"documentationUrl": "javascript:alert(1)"},
        [("input.documentationUrl", "INVALID_URL")],
    ),
    "several-at-once": (
        {"key": "Bad Key", "capabilities": ["BAD"], "latencyThresholdMs": 10**6},
        [
            ("input.key", "INVALID_KEY"),
            ("input.capabilities", "INVALID_CAPABILITY"),
            ("input.latencyThresholdMs", "OUT_OF_RANGE"),
        ],
    ),
}


ClientCase = tuple[Callable[[World], dict[str, Any]], list[tuple[str, str]]]


def _client(**overrides: Any) -> Callable[[World], dict[str, Any]]:
    def build(world: World) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "providerId": world.own_provider_id,
            "assembly": "Acme.Hr.ApiClient",
            "version": "2.0.0",
            "capabilities": ["employees.read"],
        }
        for name, value in overrides.items():
            doc[name] = value(world) if callable(value) else value
        return doc

    return build


CLIENT_CASES: dict[str, ClientCase] = {
    "semver-two-parts": (_client(version="1.0"), [("input.version", "INVALID_SEMVER")]),
    "semver-leading-zero": (_client(version="01.0.0"), [("input.version", "INVALID_SEMVER")]),
    "semver-empty-prerelease": (_client(version="1.0.0-"), [("input.version", "INVALID_SEMVER")]),
    "semver-v-prefix": (_client(version="v2.0.0"), [("input.version", "INVALID_SEMVER")]),
    "semver-too-long": (
        _client(version="1.0.0-" + "a" * 60),
        [("input.version", "INVALID_SEMVER")],
    ),
    "version-duplicate": (_client(version="1.0.0"), [("input.version", "DUPLICATE_VERSION")]),
    "version-equal-precedence": (
        _client(version="1.0.0+build.7"),
        [("input.version", "DUPLICATE_VERSION")],
    ),
    "provider-unknown": (
        _client(providerId=UNKNOWN_PROVIDER_ID),
        [("input.providerId", "PROVIDER_NOT_FOUND")],
    ),
    "provider-not-an-id": (
        _client(providerId="nope"),
        [("input.providerId", "PROVIDER_NOT_FOUND")],
    ),
    "provider-of-another-tenant": (
        _client(providerId=lambda w: w.other_tenant_provider_id),
        [("input.providerId", "PROVIDER_NOT_FOUND")],
    ),
    "provider-global": (
        _client(providerId=lambda w: w.global_provider_id),
        [("input.providerId", "GLOBAL_PROVIDER_READ_ONLY")],
    ),
    "capability-undeclared": (
        _client(capabilities=["employees.read", "messages.send"]),
        [("input.capabilities", "UNDECLARED_CAPABILITY")],
    ),
    "capability-invalid": (
        _client(capabilities=["employees read"]),
        [("input.capabilities", "INVALID_CAPABILITY")],
    ),
    "capabilities-empty": (_client(capabilities=[]), [("input.capabilities", "REQUIRED")]),
    "assembly-single-name": (
        _client(assembly="ConnectSoft"),
        [("input.assembly", "INVALID_ASSEMBLY")],
    ),
    "assembly-with-space": (
        _client(assembly="Connect Soft.ApiClient"),
        [("input.assembly", "INVALID_ASSEMBLY")],
    ),
    "assembly-leading-digit": (
        _client(assembly="ConnectSoft.1Deputy"),
        [("input.assembly", "INVALID_ASSEMBLY")],
    ),
    "assembly-too-long": (
        _client(assembly="A." + "b" * 200),
        [("input.assembly", "INVALID_ASSEMBLY")],
    ),
    "assembly-blank": (_client(assembly=""), [("input.assembly", "REQUIRED")]),
}


def _pairs(payload: dict[str, Any]) -> list[tuple[str, str]]:
    errors = payload["userErrors"]
    assert all(e["message"] for e in errors)
    return [(e["field"], e["code"]) for e in errors]


@pytest.mark.parametrize("case", list(PROVIDER_CASES), ids=list(PROVIDER_CASES))
async def test_register_provider_rejects(case: str, shared: SharedApp, world: World) -> None:
    http, server = shared.http, shared
    overrides, expected = PROVIDER_CASES[case]
    before = await counts(server.services.db)
    body = await gql(
        http, REGISTER_PROVIDER, {"input": provider_input(**overrides)}, token=world.token
    )
    assert "errors" not in body, body
    payload = body["data"]["registerProvider"]
    assert payload["provider"] is None
    assert _pairs(payload) == expected
    assert await counts(server.services.db) == before  # no row, no audit event, no outbox


@pytest.mark.parametrize("case", list(CLIENT_CASES), ids=list(CLIENT_CASES))
async def test_register_api_client_rejects(case: str, shared: SharedApp, world: World) -> None:
    http, server = shared.http, shared
    build, expected = CLIENT_CASES[case]
    before = await counts(server.services.db)
    body = await gql(http, REGISTER_API_CLIENT, {"input": build(world)}, token=world.token)
    assert "errors" not in body, body
    payload = body["data"]["registerApiClient"]
    assert payload["apiClient"] is None
    assert _pairs(payload) == expected
    assert await counts(server.services.db) == before


async def test_the_valid_inputs_the_cases_start_from_are_accepted(
    shared: SharedApp, world: World
) -> None:
    """Guards the cases above: each fails for its own reason, not a broken baseline."""
    http, server = shared.http, shared
    before = await counts(server.services.db)
    provider = await gql(
        http, REGISTER_PROVIDER, {"input": provider_input(key="acme-hr-2")}, token=world.token
    )
    assert provider["data"]["registerProvider"]["userErrors"] == []
    client = await gql(http, REGISTER_API_CLIENT, {"input": _client()(world)}, token=world.token)
    assert client["data"]["registerApiClient"]["userErrors"] == []
    after = await counts(server.services.db)
    assert (after.providers, after.clients) == (before.providers + 1, before.clients + 1)
    assert after.audit_events == before.audit_events + 2
    assert after.outbox == before.outbox + 2
