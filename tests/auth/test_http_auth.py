"""HTTP authentication on /graphql (DESIGN §3): 401 with a GraphQL-shaped body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.settings import DEV_AUDIENCE, DEV_ISSUER
from tests.conftest import TokenFactory
from tests.support.graphql import error_codes, gql

VIEWER = "{ viewer { subject tenantId name scopes can { establishConnection rotateCredential replayWebhookDelivery } } }"


async def test_viewer_answers_with_the_token_identity(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    body = await gql(http, VIEWER, token=make_token(tenant="acme", subject="alice", scopes="all"))
    viewer = body["data"]["viewer"]
    assert viewer["subject"] == "alice"
    assert viewer["tenantId"] == "acme"
    assert viewer["name"] == "Alice"
    assert set(viewer["scopes"]) == {s.value for s in ALL_SCOPES}
    assert viewer["can"] == {
        "establishConnection": True,
        "rotateCredential": True,
        "replayWebhookDelivery": True,
    }


async def test_viewer_can_reflects_the_scopes(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    body = await gql(http, VIEWER, token=make_token(scopes="connections:write"))
    assert body["data"]["viewer"]["can"] == {
        "establishConnection": True,
        "rotateCredential": False,
        "replayWebhookDelivery": False,
    }


def _forged(**claims: object) -> str:
    now = datetime.now(UTC)
    base = {
        "sub": "alice",
        "tid": "acme",
        "scp": "audit:read",
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    base.update(claims)
    return jwt.encode(base, "another-key-that-is-not-the-servers-0123456789", algorithm="HS256")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic YWxpY2U6cHc="}, "Bearer"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid token"),
        ({"Authorization": "Bearer " + _forged()}, "invalid token"),
        (
            {"Authorization": "Bearer " + jwt.encode({"sub": "a"}, None, algorithm="none")},
            "invalid token",
        ),
    ],
    ids=["missing", "wrong-scheme", "malformed", "other-key", "alg-none"],
)
async def test_bad_tokens_get_401_with_a_graphql_body(
    http: httpx.AsyncClient, headers: dict[str, str], reason: str
) -> None:
    response = await http.post("/graphql", json={"query": VIEWER}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["data"] is None
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert reason in body["errors"][0]["message"]


async def test_expired_token_gets_401(http: httpx.AsyncClient, make_token: TokenFactory) -> None:
    token = make_token(ttl=timedelta(minutes=-5))  # expired beyond the 30 s leeway
    body = await gql(http, VIEWER, token=token, expect_status=401)
    assert body["errors"][0]["message"] == "token expired"


async def test_token_without_tenant_is_refused(http: httpx.AsyncClient, settings: object) -> None:
    from studio_integrations.settings import Settings

    assert isinstance(settings, Settings)
    now = datetime.now(UTC)
    token = jwt.encode(
        {
            "sub": "alice",
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "exp": int((now + timedelta(minutes=5)).timestamp()),
        },
        settings.resolved_dev_signing_key,
        algorithm="HS256",
    )
    body = await gql(http, VIEWER, token=token, expect_status=401)
    assert "tenant" in body["errors"][0]["message"]


async def test_graphiql_page_needs_no_token_but_get_queries_do(http: httpx.AsyncClient) -> None:
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    query = await http.get(
        "/graphql", params={"query": "{ viewer { subject } }"}, headers={"Accept": "text/html"}
    )
    assert query.status_code == 401


async def test_get_query_with_token_works(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    response = await http.get(
        "/graphql",
        params={"query": "{ viewer { tenantId } }"},
        headers={"Authorization": f"Bearer {make_token(tenant='globex')}"},
    )
    assert response.status_code == 200
    assert response.json()["data"]["viewer"]["tenantId"] == "globex"


@pytest.mark.workers("all")
async def test_health_endpoints(http: httpx.AsyncClient) -> None:
    health = (await http.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["workers"]["healthProber"]["running"] is True
    assert isinstance(health["workers"]["healthProber"]["probed"], int)
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
