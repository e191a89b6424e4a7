"""A database outage is answered HTTP 503 SERVICE_UNAVAILABLE with Retry-After (GraphQL-shaped),
not "Unexpected error." with 200; /readyz says 503 too. Proved against databases that cannot
be reached: a PostgreSQL port nobody listens on, and a SQLite file that cannot be opened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.auth.tokens import mint_dev_token
from studio_integrations.settings import Settings

DEAD = {
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:1/nothing",
    "sqlite": "sqlite+aiosqlite:////nonexistent-dir/for/sure/studio.db",
}


@pytest.fixture(params=sorted(DEAD))
async def dead(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = Settings(
        database_url=DEAD[request.param],
        broadcast_url="memory://",
        state_dir=tmp_path,
        dev_signing_key="test-signing-key-0123456789abcdef0123456789abcdef",
        master_key="test-master-key",
        allow_loopback_targets=True,
    )
    app = create_app(settings)
    token = mint_dev_token(settings, tenant="acme", subject="alice", scopes=ALL_SCOPES)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
        yield client, token
    await app.state.services.db.dispose()


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "unavailable" in error["message"]


async def test_a_query_during_a_database_outage_is_503(
    dead: tuple[httpx.AsyncClient, str],
) -> None:
    client, token = dead
    response = await client.post(
        "/graphql",
        json={"query": "{ webhookSubscriptions(first: 1) { nodes { id } } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    _assert_unavailable(response)


async def test_a_mutation_during_a_database_outage_is_503(
    dead: tuple[httpx.AsyncClient, str],
) -> None:
    client, token = dead
    response = await client.post(
        "/graphql",
        json={
            "query": "mutation ($i: CreateWebhookSubscriptionInput!) {"
            " createWebhookSubscription(input: $i) { subscription { id } } }",
            "variables": {
                "i": {"eventType": "ProviderRegistered", "endpointUrl": "http://127.0.0.1:8443/x"}
            },
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    _assert_unavailable(response)


async def test_readyz_is_503_during_a_database_outage(
    dead: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = dead
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unavailable")
