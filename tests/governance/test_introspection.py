"""Introspection needs a token always, and in production is off unless allowed; GraphiQL too."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TokenFactory
from tests.governance.conftest import ServerFactory, client
from tests.support.graphql import error_codes, gql

SCHEMA = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "Provider") { name } }'
HIDDEN_IN_FRAGMENT = "query { ...Q } fragment Q on Query { __schema { types { name } } }"


async def test_development_serves_introspection_to_authenticated_callers_only(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    body = await gql(http, SCHEMA, token=make_token(scopes="health:read"))
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    anonymous = await http.post("/graphql", json={"query": SCHEMA})
    assert anonymous.status_code == 401
    assert error_codes(anonymous.json()) == ["UNAUTHENTICATED"]
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


@pytest.mark.parametrize("document", [SCHEMA, TYPE, HIDDEN_IN_FRAGMENT])
async def test_production_refuses_introspection(
    production_server: ServerFactory, document: str
) -> None:
    async with production_server() as prod, client(prod.live) as http:
        body = await gql(http, document, token=prod.token())
        assert body["data"] is None
        assert error_codes(body) == ["INTROSPECTION_DISABLED"]
        # Ordinary queries, __typename included, are unaffected.
        fine = await gql(http, "{ __typename viewer { subject } }", token=prod.token())
        assert fine["data"] == {"__typename": "Query", "viewer": {"subject": "alice"}}


async def test_production_hides_graphiql_unless_allowed(
    production_server: ServerFactory,
) -> None:
    async with production_server() as prod, client(prod.live) as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 404
        assert error_codes(page.json()) == ["NOT_FOUND"]
    async with (
        production_server(graphiql=True, introspection=True) as prod,
        client(prod.live) as http,
    ):
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        body = await gql(http, TYPE, token=prod.token())
        assert body["data"] == {"__type": {"name": "Provider"}}


async def test_development_can_turn_introspection_off(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    async with limited_server(introspection=False) as server, client(server) as http:
        assert error_codes(await gql(http, SCHEMA, token=make_token())) == [
            "INTROSPECTION_DISABLED"
        ]
