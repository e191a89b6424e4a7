"""GraphQL over HTTP: `Accept: application/graphql-response+json` gets that media type and the
spec's status codes; plain application/json keeps the legacy answers."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from tests.conftest import TokenFactory
from tests.support.live import LiveServer

MEDIA = "application/graphql-response+json"


async def ask(
    http: httpx.AsyncClient, token: str | None, accept: str, **body: Any
) -> httpx.Response:
    headers = {"Accept": accept}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await http.post("/graphql", json=body, headers=headers)


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


async def test_requests_that_fail_before_execution_are_4xx_without_data(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    for query, code in (
        ("{ viewer { subject ", "GRAPHQL_PARSE_FAILED"),
        ("{ viewer { noSuchField } }", "GRAPHQL_VALIDATION_FAILED"),
    ):
        response = await ask(http, token, f"{MEDIA}, application/json;q=0.9", query=query)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith(MEDIA)
        assert "data" not in response.json()
        assert codes(response) == [code]

        legacy = await ask(http, token, "application/json", query=query)
        assert legacy.status_code == 200
        assert legacy.headers["content-type"].startswith("application/json")
        assert legacy.json()["data"] is None
        assert codes(legacy) == [code]

    missing = await ask(http, token, MEDIA, variables={})
    assert missing.status_code == 400
    assert missing.headers["content-type"].startswith(MEDIA)
    assert "data" not in missing.json()

    unknown = hashlib.sha256(b"{ viewer { subject } }").hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": unknown}}
    miss = await ask(http, token, MEDIA, extensions=persisted)
    assert miss.status_code == 400
    assert codes(miss) == ["PERSISTED_QUERY_NOT_FOUND"]
    legacy_miss = await ask(http, token, "application/json", extensions=persisted)
    assert legacy_miss.status_code == 200  # what Apollo's clients expect
    assert codes(legacy_miss) == ["PERSISTED_QUERY_NOT_FOUND"]

    # Authentication is still checked first.
    assert (await ask(http, None, MEDIA, query="{ viewer { subject } }")).status_code == 401


async def test_executed_requests_are_200_with_their_field_errors(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    # A guarded field the caller may not read: null with FORBIDDEN, the rest arrives.
    token = make_token(scopes="connections:read")
    query = "{ viewer { subject } credentials(first: 1) { nodes { id } } }"
    response = await ask(http, token, MEDIA, query=query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(MEDIA)
    body = response.json()
    assert body["data"] == {"viewer": {"subject": "alice"}, "credentials": None}
    assert codes(response) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["credentials"]

    legacy = await ask(http, token, "application/json", query=query)
    assert legacy.status_code == 200
    assert legacy.headers["content-type"].startswith("application/json")
    assert legacy.json() == body
