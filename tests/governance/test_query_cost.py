"""The query cost estimate (page sizes multiplied through nesting, plus depth) and its limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import parse

from studio_integrations.schema.operation_limits import (
    CostEstimate,
    estimate_cost,
    root_field_count,
)
from studio_integrations.schema.schema import schema
from tests.conftest import TokenFactory
from tests.governance.conftest import ServerFactory, client, provider_input, registry_counts
from tests.support.graphql import error_codes, gql

GRAPHQL_SCHEMA = schema._schema


def cost(
    document: str, variables: dict[str, Any] | None = None, name: str | None = None
) -> CostEstimate:
    return estimate_cost(GRAPHQL_SCHEMA, parse(document), name, variables)


@pytest.mark.parametrize(
    ("document", "objects", "depth"),
    [
        ("{ viewer { subject } }", 0, 2),
        ("{ providers { nodes { id } } }", 20, 3),  # default page: 20
        (
            "{ providers(first: 50) { edges { cursor node { id } } pageInfo { hasNextPage } } }",
            50,
            4,
        ),
        # 50 providers, each with up to 20 API clients (an unpaged list counts 20)
        ("{ providers(first: 50) { nodes { apiClients { id } } } }", 50 + 50 * 20, 4),
        # two connections side by side add up
        ("{ providers(first: 5) { nodes { id } } credentials(first: 7) { nodes { id } } }", 12, 3),
        # pages multiply through nesting
        (
            "{ integrationConnections(first: 10) { nodes { runs(first: 30) { nodes { attempts { number } } } } } }",
            10 + 10 * 30 + 10 * 30 * 20,
            6,
        ),
        ("{ providers(first: 1000) { nodes { id } } }", 100, 3),  # clamped to the maximum page
        ("{ providers(first: -5) { nodes { id } } }", 0, 3),
        (
            "{ __schema { types { fields { name type { ofType { name } } } } } }",
            0,
            0,
        ),  # introspection
        ("{ __typename viewer { __typename } }", 0, 1),
    ],
)
def test_estimates(document: str, objects: int, depth: int) -> None:
    estimate = cost(document)
    assert (estimate.objects, estimate.depth) == (objects, depth)
    assert estimate.total == objects + depth


def test_variables_and_their_defaults_set_page_sizes() -> None:
    document = "query ($n: Int! = 5) { providers(first: $n) { nodes { id } } }"
    assert cost(document, {"n": 7}).objects == 7
    assert cost(document, {}).objects == 5
    assert cost(document, {"n": "lots"}).objects == 20  # not an int: the default page


def test_fragments_and_inline_fragments_count_like_their_fields() -> None:
    spread = """
    fragment Clients on Provider { apiClients { id } }
    { providers(first: 10) { nodes { ...Clients ... on Provider { apiClients { version } } } } }
    """
    assert cost(spread).objects == 10 + 2 * 10 * 20
    node = '{ node(id: "x") { ... on Provider { apiClients { id } } } }'
    assert cost(node).objects == 20


def test_fragments_spread_exponentially_are_estimated_in_linear_time() -> None:
    # F40 spreads F39 twice, …: 2**40 copies of F0. Walking each copy would never finish;
    # each fragment is walked once (a hang here fails on the suite's timeout).
    fragments = ["fragment F0 on Provider { apiClients { id } }"]
    fragments += [f"fragment F{i} on Provider {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 41)]
    document = "\n".join(fragments) + "\n{ providers(first: 1) { nodes { ...F40 } } }"
    assert cost(document).objects == 1 + 20 * 2**40


def test_the_named_operation_is_the_one_estimated() -> None:
    document = (
        "query Small { viewer { subject } } query Big { providers(first: 100) { nodes { id } } }"
    )
    assert cost(document, name="Small").objects == 0
    assert cost(document, name="Big").objects == 100


def test_mutations_charge_one_unit_per_root_field() -> None:
    document = parse(
        "fragment More on Mutation { c: registerProvider(input: $i) { userErrors { code } } }"
        " mutation ($i: RegisterProviderInput!) { a: registerProvider(input: $i) { userErrors { code } }"
        " b: registerProvider(input: $i) { userErrors { code } } ...More __typename }"
    )
    assert root_field_count(document, None) == 3


# --- the limit on the live server -------------------------------------------------------

PROVIDERS = "query ($n: Int!) { providers(first: $n) { nodes { id apiClients { id } } } }"


async def test_queries_over_the_limit_are_refused_before_running(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    async with limited_server(max_query_cost=500) as server, client(server) as http:
        fine = await gql(http, PROVIDERS, {"n": 20}, token=make_token())  # 20 + 400 + 4
        assert "errors" not in fine and isinstance(fine["data"]["providers"]["nodes"], list)
        body = await gql(http, PROVIDERS, {"n": 30}, token=make_token())  # 30 + 600 + 4
        assert body["data"] is None
        assert error_codes(body) == ["QUERY_TOO_COSTLY"]
        extensions = body["errors"][0]["extensions"]
        assert extensions["cost"] == 634 and extensions["maxCost"] == 500
        assert "first" in body["errors"][0]["message"]


async def test_a_costly_mutation_is_refused_and_writes_nothing(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    cheap = """mutation ($input: RegisterProviderInput!) {
      registerProvider(input: $input) { provider { id } userErrors { code } } }"""
    costly = """mutation ($input: RegisterProviderInput!) {
      registerProvider(input: $input) { provider { id apiClients { id } } userErrors { code } } }"""
    async with limited_server(max_query_cost=30) as server, client(server) as http:
        before = await registry_counts(server.services)
        body = await gql(http, costly, {"input": provider_input()}, token=make_token())
        assert error_codes(body) == ["QUERY_TOO_COSTLY"] and body["data"] is None
        assert await registry_counts(server.services) == before
        done = await gql(http, cheap, {"input": provider_input()}, token=make_token())
        assert done["data"]["registerProvider"]["provider"]["id"]
        after = await registry_counts(server.services)
        assert after["providers"] == before["providers"] + 1


async def test_subscriptions_over_http_are_refused_clearly(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    body = await gql(http, "subscription { auditEvents { id } }", token=make_token())
    assert error_codes(body) == ["SUBSCRIPTIONS_REQUIRE_WEBSOCKET"]
    assert body["data"] is None
