"""Idempotency-Key on mutations and the REST alias: a retry with the same key and body gets
the first answer and acts once; another body is refused; keys are per tenant and subject."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IdempotencyKey, WebhookSubscription
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.support.live import LiveServer

CREATE = """
mutation ($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { subscription { id } userErrors { code } }
}
"""


def _body(endpoint: str = "https://hooks.example.com/a") -> dict[str, Any]:
    return {
        "query": CREATE,
        "variables": {"input": {"eventType": "ProviderRegistered", "endpointUrl": endpoint}},
    }


async def _post(
    http: httpx.AsyncClient, token: str, body: dict[str, Any], key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post("/graphql", json=body, headers=headers)


async def _count(services: Services, model: Any) -> int:
    async with services.db.session(TenantScope.system_scope()) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_acts_once(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token(tenant="acme", subject="alice")
    first = await _post(http, token, _body(), "retry-1")
    second = await _post(http, token, _body(), "retry-1")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert first.json()["data"]["createWebhookSubscription"]["subscription"]["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await _count(server.services, WebhookSubscription) == 1
    # Without a key, the same request acts again.
    await _post(http, token, _body(), None)
    assert await _count(server.services, WebhookSubscription) == 2


async def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token(tenant="acme", subject="alice")
    await _post(http, token, _body(), "k-2")
    refused = await _post(http, token, _body("https://hooks.example.com/other"), "k-2")
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _count(server.services, WebhookSubscription) == 1


async def test_keys_are_scoped_to_tenant_and_subject(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    for tenant, subject in (("acme", "alice"), ("acme", "bob"), ("globex", "alice")):
        response = await _post(http, make_token(tenant=tenant, subject=subject), _body(), "same")
        assert "idempotent-replayed" not in response.headers
    assert await _count(server.services, WebhookSubscription) == 3
    assert await _count(server.services, IdempotencyKey) == 3


async def test_queries_and_bad_keys(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    query = {"query": "{ viewer { subject } }"}
    assert (await _post(http, token, query, "q-1")).status_code == 200
    assert await _count(server.services, IdempotencyKey) == 0  # queries are not kept
    for bad in ("", "x" * 256, "has space"):
        response = await _post(http, token, _body(), bad)
        assert response.status_code == 400, bad
        assert response.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_INVALID"
    assert await _count(server.services, WebhookSubscription) == 0


async def test_the_rest_alias_replays_its_first_answer(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "rest-1"}
    body = {"credentialId": "cred_01JD8ZZZZZZZZZZZZZZZZZZZZZ"}
    first = await http.post("/integrations/credentials/rotate", json=body, headers=headers)
    second = await http.post("/integrations/credentials/rotate", json=body, headers=headers)
    assert first.status_code == second.status_code == 404
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = await http.post(
        "/integrations/credentials/rotate",
        json={"credentialId": "cred_01JD8YYYYYYYYYYYYYYYYYYYYY"},
        headers=headers,
    )
    assert other.status_code == 422
    assert other.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
