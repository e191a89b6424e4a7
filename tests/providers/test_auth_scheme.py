"""Providers carry an authScheme: validated on registration, stored, shown, audited, shipped."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from studio_integrations.outbound.provider_calls import AuthScheme
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import Provider
from studio_integrations.seed.catalogue import CatalogueLoad, load_catalogue
from studio_integrations.services import Services
from tests.conftest import SharedApp, TokenFactory
from tests.providers.conftest import PROVIDERS, REGISTER_PROVIDER, counts, provider_input
from tests.support.graphql import gql
from tests.support.live import LiveServer

AUDIT = """
query ($subjectId: ID) {
  auditEvents(filter: {subjectId: $subjectId}) { nodes { type data } }
}
"""

SCHEME: dict[str, Any] = {
    "apiKey": {"in": "query", "names": ["api_key", "api_secret"]},
    "bearer": {},  # empty: dropped when normalised
    "oauth2": {
        "tokenUrl": "https://{tenantHost}/oauth/token",
        "scope": "hr.read hr.write",
        "clientAuth": "body",
        "params": {"audience": "https://hr.acme.example"},
    },
}
NORMALISED = {k: v for k, v in SCHEME.items() if v}


async def _register(http: httpx.AsyncClient, token: str, **overrides: Any) -> dict[str, Any]:
    body = await gql(http, REGISTER_PROVIDER, {"input": provider_input(**overrides)}, token=token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["registerProvider"]
    return payload


async def _stored_scheme(services: Services, key: str) -> tuple[bool, Any]:
    """(the column is SQL NULL, its value) for the provider ``key`` of any tenant."""
    async with services.db.session(TenantScope.system_scope()) as session:
        row = (await session.execute(select(Provider).where(Provider.key == key))).scalar_one()
        is_null = (
            await session.execute(
                select(Provider.id).where(Provider.id == row.id, Provider.auth_scheme.is_(None))
            )
        ).first() is not None
        return is_null, row.auth_scheme


async def test_a_registered_auth_scheme_round_trips_through_the_api_and_the_event(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token(tenant="acme", scopes="all")

    payload = await _register(
        http, token, authModes=["API_KEY", "OAUTH2_CLIENT_CREDENTIALS"], authScheme=SCHEME
    )

    assert payload["userErrors"] == []
    provider = payload["provider"]
    assert provider["authScheme"] == NORMALISED
    listed = await gql(http, PROVIDERS, {"filter": {"includeGlobal": False}}, token=token)
    [node] = listed["data"]["providers"]["nodes"]
    assert node["authScheme"] == NORMALISED
    assert await _stored_scheme(server.services, "acme-hr") == (False, NORMALISED)
    events = await gql(http, AUDIT, {"subjectId": provider["id"]}, token=token)
    [event] = events["data"]["auditEvents"]["nodes"]
    assert event["type"] == "ProviderRegistered"
    assert event["data"]["authScheme"] == NORMALISED
    # What is stored is what the caller applies.
    scheme = AuthScheme.from_mapping(node["authScheme"])
    assert (scheme.api_key_in, scheme.api_key_names) == ("query", ("api_key", "api_secret"))
    assert (scheme.token_client_auth, scheme.scope) == ("body", "hr.read hr.write")
    assert scheme.token_params == {"audience": "https://hr.acme.example"}


async def test_no_auth_scheme_means_the_defaults_and_a_null_column(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token(tenant="acme", scopes="all")

    plain = await _register(http, token)
    empty = await _register(http, token, key="acme-crm", authScheme={"bearer": {}})

    assert plain["userErrors"] == [] and empty["userErrors"] == []
    assert plain["provider"]["authScheme"] is None
    assert empty["provider"]["authScheme"] is None  # only empty sections: the defaults
    assert await _stored_scheme(server.services, "acme-hr") == (True, None)
    assert await _stored_scheme(server.services, "acme-crm") == (True, None)
    events = await gql(http, AUDIT, {"subjectId": plain["provider"]["id"]}, token=token)
    assert events["data"]["auditEvents"]["nodes"][0]["data"]["authScheme"] is None


REJECTED: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-section": ({"authScheme": {"digest": {}}}, "INVALID_AUTH_SCHEME"),
    "unknown-key-in-a-section": (
        {"authScheme": {"apiKey": {"in": "header", "location": "x"}}},
        "INVALID_AUTH_SCHEME",
    ),
    "header-name-with-a-space": (
        {"authScheme": {"apiKey": {"names": ["X Api Key"]}}},
        "INVALID_AUTH_SCHEME",
    ),
    "bearer-header-with-a-space": (
        {"authScheme": {"bearer": {"header": "My Auth"}}},
        "INVALID_AUTH_SCHEME",
    ),
    "oauth2-without-that-mode": (
        {"authScheme": {"oauth2": {"tokenUrl": "/oauth/token"}}},
        "INVALID_AUTH_SCHEME",
    ),
    "api-key-without-that-mode": (
        {"authModes": ["BEARER_TOKEN"], "authScheme": {"apiKey": {"names": ["X-Key"]}}},
        "INVALID_AUTH_SCHEME",
    ),
    "not-an-object": ({"authScheme": ["apiKey"]}, "INVALID_AUTH_SCHEME"),
    "section-not-an-object": ({"authScheme": {"apiKey": []}}, "INVALID_AUTH_SCHEME"),
    "names-not-a-list": ({"authScheme": {"apiKey": {"names": "X-Key"}}}, "INVALID_AUTH_SCHEME"),
    "names-repeated": (
        {"authScheme": {"apiKey": {"names": ["X-Key", "x-key"]}}},
        "INVALID_AUTH_SCHEME",
    ),
    "header-that-frames-the-request": (
        {"authScheme": {"apiKey": {"names": ["Host"]}}},
        "INVALID_AUTH_SCHEME",
    ),
    "in-neither-header-nor-query": (
        {"authScheme": {"apiKey": {"in": "body"}}},
        "INVALID_AUTH_SCHEME",
    ),
    "query-name-to-encode": (
        {"authScheme": {"apiKey": {"in": "query", "names": ["key&admin=1"]}}},
        "INVALID_AUTH_SCHEME",
    ),
    "prefix-on-a-query-parameter": (
        {"authScheme": {"apiKey": {"in": "query", "names": ["key"], "prefix": "Key"}}},
        "INVALID_AUTH_SCHEME",
    ),
    "token-url-neither-absolute-nor-a-path": (
        {
            "authModes": ["OAUTH2_CLIENT_CREDENTIALS"],
            "authScheme": {"oauth2": {"tokenUrl": "oauth/token"}},
        },
        "INVALID_AUTH_SCHEME",
    ),
    "token-url-unknown-placeholder": (
        {
            "authModes": ["OAUTH2_CLIENT_CREDENTIALS"],
            "authScheme": {"oauth2": {"tokenUrl": "https://{region}.acme.example/token"}},
        },
        "UNKNOWN_PLACEHOLDER",
    ),
    "token-param-the-caller-sets": (
        {
            "authModes": ["OAUTH2_CLIENT_CREDENTIALS"],
            "authScheme": {"oauth2": {"params": {"grant_type": "password"}}},
        },
        "INVALID_AUTH_SCHEME",
    ),
    "client-auth-unknown": (
        {
            "authModes": ["OAUTH2_CLIENT_CREDENTIALS"],
            "authScheme": {"oauth2": {"clientAuth": "jwt"}},
        },
        "INVALID_AUTH_SCHEME",
    ),
    "too-large": (
        {"authScheme": {"apiKey": {"names": ["X-Key"], "prefix": "p" * 5000}}},
        "TOO_LARGE",
    ),
    "too-deep": (
        {"authScheme": {"oauth2": {"params": {"a": {"b": {"c": "d"}}}}}},
        "TOO_LARGE",
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def catalogued(shared: SharedApp) -> SharedApp:
    """The module's shared app with the catalogue loaded (the refusals below change nothing)."""
    await load_catalogue(shared.services.db)
    return shared


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", list(REJECTED), ids=list(REJECTED))
async def test_an_invalid_auth_scheme_is_refused_and_nothing_is_written(
    case: str, catalogued: SharedApp
) -> None:
    services, http = catalogued.services, catalogued.http
    overrides, code = REJECTED[case]
    token = catalogued.make_token(tenant="acme", scopes="all")
    before = await counts(services.db)

    payload = await _register(http, token, **overrides)

    assert payload["provider"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [("input.authScheme", code)]
    assert all(e["message"] for e in payload["userErrors"])
    assert await counts(services.db) == before  # no provider, audit event or outbox row


async def test_the_catalogue_ships_each_providers_scheme(
    http: httpx.AsyncClient, make_token: TokenFactory, catalogue: CatalogueLoad
) -> None:
    body = await gql(http, PROVIDERS, {}, token=make_token(scopes="providers:read"))
    schemes = {n["key"]: n["authScheme"] for n in body["data"]["providers"]["nodes"]}

    # https://developers.messagebird.com/api/#authentication: "Authorization: AccessKey <key>"
    assert schemes["messagebird"] == {
        "apiKey": {"in": "header", "names": ["Authorization"], "prefix": "AccessKey"}
    }
    # Vonage Account/SMS APIs: api_key and api_secret as query parameters.
    assert schemes["vonage"] == {"apiKey": {"in": "query", "names": ["api_key", "api_secret"]}}
    # Deputy permanent tokens: "Authorization: OAuth <token>".
    assert schemes["deputy"] == {"bearer": {"header": "Authorization", "prefix": "OAuth"}}
    # BILL v3: only the closest static form of its session login.
    assert schemes["bill"] == {"apiKey": {"in": "header", "names": ["devKey"]}}
    assert schemes["braze"] is schemes["sinch"] is schemes["twilio"] is None  # the defaults

    messagebird = AuthScheme.from_mapping(schemes["messagebird"])
    assert (messagebird.api_key_names, messagebird.api_key_prefix) == (
        ("Authorization",),
        "AccessKey",
    )
    assert AuthScheme.from_mapping(schemes["deputy"]).bearer_prefix == "OAuth"
    assert AuthScheme.from_mapping(schemes["sinch"]).bearer_prefix == "Bearer"
