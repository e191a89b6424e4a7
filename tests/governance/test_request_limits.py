"""Transport limits on POST/GET /graphql: size, media type, JSON shape and depth, batches.

Every refusal is a GraphQL-shaped JSON body with an ``extensions.code`` and a 4xx status,
and authentication still comes first.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from studio_integrations.auth.request_limits import json_depth
from tests.conftest import TokenFactory
from tests.governance.conftest import (
    REGISTER_PROVIDER,
    ServerFactory,
    provider_input,
    registry_counts,
)
from tests.support.graphql import error_codes
from tests.support.live import LiveServer

VIEWER = '{"query": "{ viewer { subject } }"}'
MAX_BYTES = 4096
MAX_DEPTH = 8


@pytest.fixture
async def small(limited_server: ServerFactory) -> AsyncIterator[LiveServer]:
    async with limited_server(max_body_bytes=MAX_BYTES, max_json_depth=MAX_DEPTH) as server:
        yield server


@pytest.fixture
async def client(small: LiveServer, make_token: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {make_token()}"}
    async with httpx.AsyncClient(base_url=small.url, timeout=10, headers=headers) as http:
        yield http


def refusal(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["data"] is None
    assert error_codes(body) == [code]
    return body


def post(
    client: httpx.AsyncClient, content: bytes | str, content_type: str = "application/json"
) -> Any:
    return client.post("/graphql", content=content, headers={"Content-Type": content_type})


async def test_a_body_at_the_cap_is_served_and_one_byte_more_is_413(
    client: httpx.AsyncClient,
) -> None:
    prefix = '{"query": "{ viewer { subject } }", "variables": {"pad": "'
    filler = "x" * (MAX_BYTES - len(prefix) - 3)
    exact = prefix + filler + '"}}'
    assert len(exact.encode()) == MAX_BYTES
    ok = await post(client, exact)
    assert ok.status_code == 200 and ok.json()["data"]["viewer"]["subject"] == "alice"
    body = refusal(await post(client, prefix + filler + 'x"}}'), 413, "PAYLOAD_TOO_LARGE")
    assert body["errors"][0]["extensions"]["maxBytes"] == MAX_BYTES


async def test_an_oversized_streamed_body_without_content_length_is_413(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ viewer { subject } }", "variables": {"pad": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}}'

    response = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    refusal(response, 413, "PAYLOAD_TOO_LARGE")


async def test_an_oversized_mutation_writes_nothing(
    small: LiveServer, client: httpx.AsyncClient
) -> None:
    before = await registry_counts(small.services)
    big = provider_input(description="d" * MAX_BYTES)
    body = json.dumps({"query": REGISTER_PROVIDER, "variables": {"input": big}})
    refusal(await post(client, body), 413, "PAYLOAD_TOO_LARGE")
    assert await registry_counts(small.services) == before
    small_enough = json.dumps(
        {"query": REGISTER_PROVIDER, "variables": {"input": provider_input()}}
    )
    created = (await post(client, small_enough)).json()["data"]["registerProvider"]
    assert created["userErrors"] == [] and created["provider"]["id"]


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (b'{"query": ', "MALFORMED_JSON", "not valid JSON"),
        (b'{"query": "{ viewer { subject } }"} trailing', "MALFORMED_JSON", "not valid JSON"),
        (b'{"query": "\xff\xfe"}', "MALFORMED_JSON", "not UTF-8"),
        (b"", "MALFORMED_JSON", "not valid JSON"),
        (b'"{ viewer { subject } }"', "BAD_REQUEST", "JSON object"),
        (b"42", "BAD_REQUEST", "JSON object"),
        (b"null", "BAD_REQUEST", "JSON object"),
        (b'{"query": 42}', "BAD_REQUEST", "`query` must be a string"),
        (b'{"query": "{ viewer { subject } }", "variables": [1]}', "BAD_REQUEST", "`variables`"),
        (b'{"variables": {}}', "BAD_REQUEST", "No GraphQL query"),
    ],
)
async def test_malformed_bodies_are_400_with_a_code(
    client: httpx.AsyncClient, content: bytes, code: str, message: str
) -> None:
    body = refusal(await post(client, content), 400, code)
    assert message in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        "application/jsonp",
        "",
    ],
)
async def test_other_content_types_are_415(client: httpx.AsyncClient, content_type: str) -> None:
    body = refusal(await post(client, VIEWER, content_type), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in body["errors"][0]["message"]


async def test_json_with_a_charset_is_fine(client: httpx.AsyncClient) -> None:
    response = await post(client, VIEWER, "application/json; charset=utf-8")
    assert response.status_code == 200 and response.json()["data"]["viewer"]["subject"] == "alice"


async def test_batches_are_refused_and_none_of_their_operations_run(
    small: LiveServer, client: httpx.AsyncClient
) -> None:
    before = await registry_counts(small.services)
    batch = [{"query": REGISTER_PROVIDER, "variables": {"input": provider_input()}}] * 2
    body = refusal(await post(client, json.dumps(batch)), 400, "BATCHING_NOT_SUPPORTED")
    assert "one operation per request" in body["errors"][0]["message"]
    assert await registry_counts(small.services) == before


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = {"k": value} if i % 2 else [value]
    return value


async def test_json_depth_is_limited_before_parsing(client: httpx.AsyncClient) -> None:
    # The body object and "variables" are two levels: MAX_DEPTH - 2 more fit.
    fits = json.dumps(
        {"query": "{ viewer { subject } }", "variables": {"x": nested(MAX_DEPTH - 2)}}
    )
    assert json_depth(fits, 100) == MAX_DEPTH
    assert (await post(client, fits)).status_code == 200
    deeper = json.dumps(
        {"query": "{ viewer { subject } }", "variables": {"x": nested(MAX_DEPTH - 1)}}
    )
    body = refusal(await post(client, deeper), 400, "JSON_TOO_DEEP")
    assert body["errors"][0]["extensions"]["maxDepth"] == MAX_DEPTH
    # Far deeper than Python's recursion limit: still a clear 400, not a 500.
    bomb = (
        '{"query": "{ viewer { subject } }", "variables": {"x": ' + "[" * 1500 + "]" * 1500 + "}}"
    )
    refusal(await post(client, bomb), 400, "JSON_TOO_DEEP")


async def test_brackets_inside_strings_do_not_count_as_depth(client: httpx.AsyncClient) -> None:
    text = json.dumps(
        {"query": "{ viewer { subject } }", "variables": {"s": "[[[[{{{{" * 50 + '\\"['}}
    )
    assert json_depth(text, 100) == 2
    assert (await post(client, text)).status_code == 200


async def test_get_variables_are_depth_checked_too(client: httpx.AsyncClient) -> None:
    deep = "[" * 200 + "]" * 200
    response = await client.get(
        "/graphql", params={"query": "{ viewer { subject } }", "variables": deep}
    )
    refusal(response, 400, "JSON_TOO_DEEP")
    broken = await client.get(
        "/graphql", params={"query": "{ viewer { subject } }", "variables": "{"}
    )
    refusal(broken, 400, "MALFORMED_JSON")
    fine = await client.get(
        "/graphql", params={"query": "{ viewer { subject } }", "variables": "{}"}
    )
    assert fine.status_code == 200 and fine.json()["data"]["viewer"]["subject"] == "alice"


async def test_unknown_operation_names_and_methods_are_json_4xx(client: httpx.AsyncClient) -> None:
    body = refusal(
        await post(client, '{"query": "query A { viewer { subject } }", "operationName": "B"}'),
        400,
        "BAD_REQUEST",
    )
    assert 'Unknown operation named "B"' in body["errors"][0]["message"]
    mutation_by_get = await client.get(
        "/graphql",
        params={"query": "mutation { registerProvider(input: {}) { userErrors { code } } }"},
    )
    assert 400 <= mutation_by_get.status_code < 500
    assert mutation_by_get.json()["errors"][0]["extensions"]["code"]


async def test_authentication_comes_before_the_body_checks(small: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=small.url, timeout=10) as anonymous:
        for content in (b"x" * (MAX_BYTES + 1), b"[1]", b"{nope"):
            response = await anonymous.post(
                "/graphql", content=content, headers={"Content-Type": "application/json"}
            )
            refusal(response, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("variables", "path"),
    [
        ({"input": provider_input(name="A\x00B")}, "variables.input.name"),
        (
            {"input": provider_input(configurationSchema={"type": "object", "title": "\x00"})},
            "variables.input.configurationSchema.title",
        ),
        (
            {"input": provider_input(configurationSchema={"type": "object", "k\x00": 1})},
            "variables.input.configurationSchema (a key)",
        ),
        ({"input": provider_input(capabilities=["ok", "\x00"])}, "variables.input.capabilities[1]"),
    ],
    ids=["name", "json-string", "json-key", "list-item"],
)
async def test_text_with_a_nul_character_is_refused_and_writes_nothing(
    small: LiveServer, client: httpx.AsyncClient, variables: dict[str, Any], path: str
) -> None:
    """PostgreSQL holds U+0000 in neither text nor jsonb: refused before anything runs."""
    before = await registry_counts(small.services)
    response = await client.post(
        "/graphql", json={"query": REGISTER_PROVIDER, "variables": variables}
    )
    body = response.json()
    assert error_codes(body) == ["NUL_CHARACTER"], body
    assert body["errors"][0]["extensions"]["path"] == path
    assert body["data"] is None
    assert await registry_counts(small.services) == before


async def test_a_nul_character_in_a_literal_or_a_query_filter_is_refused(
    client: httpx.AsyncClient,
) -> None:
    literal = '{ integrationConnections(filter: {search: "a\\u0000"}) { nodes { id } } }'
    body = (await client.post("/graphql", json={"query": literal})).json()
    assert error_codes(body) == ["NUL_CHARACTER"], body
    query = "query ($s: String) { integrationConnections(filter: {search: $s}) { nodes { id } } }"
    body = (await client.post("/graphql", json={"query": query, "variables": {"s": "\x00"}})).json()
    assert error_codes(body) == ["NUL_CHARACTER"], body
    # The escape itself, as text, is fine.
    body = (
        await client.post("/graphql", json={"query": query, "variables": {"s": "\\u0000"}})
    ).json()
    assert "errors" not in body, body
