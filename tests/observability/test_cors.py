"""CORS for the HTTP API from STUDIO_ALLOWED_ORIGINS: preflights from an allowed and a refused
origin, the headers an allowed origin may read, and no CORS at all without the setting."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import Backend
from tests.support.graphql import gql
from tests.support.live import LiveServer

STUDIO = "https://studio.example"


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, allowed_origins=STUDIO, token_mutations_per_minute=1)


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


async def test_preflight_from_an_allowed_origin(http: httpx.AsyncClient) -> None:
    response = await http.options("/graphql", headers=preflight(STUDIO))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == STUDIO
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed.split(", "))
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_from_a_refused_origin(http: httpx.AsyncClient) -> None:
    response = await http.options("/graphql", headers=preflight("https://evil.example"))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_an_allowed_origin_reads_retry_after(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    headers = {"Origin": STUDIO}
    body = await gql(http, "{ viewer { subject } }", token=token, headers=headers)
    assert body["data"]["viewer"]["subject"] == "alice"
    mutation = 'mutation { setRotationPolicy(input: {credentialId: "x", cadenceDays: 30, expiryWarningDays: 7}) { userErrors { code } } }'
    statuses = []
    for _ in range(2):
        response = await http.post(
            "/graphql",
            json={"query": mutation},
            headers={**headers, "Authorization": f"Bearer {token}"},
        )
        statuses.append(response.status_code)
    assert statuses[-1] == 429
    assert response.headers["access-control-allow-origin"] == STUDIO
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed and response.headers["retry-after"]
    # Another origin's request gets an answer, but no header lets its page read it.
    other = await http.post(
        "/graphql",
        json={"query": "{ viewer { subject } }"},
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {token}"},
    )
    assert "access-control-allow-origin" not in other.headers


async def test_without_allowed_origins_there_is_no_cors(backend: Backend, tmp_path: Path) -> None:
    app = create_app(make_settings(backend, tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.options("/graphql", headers=preflight(STUDIO))
    assert "access-control-allow-origin" not in response.headers
