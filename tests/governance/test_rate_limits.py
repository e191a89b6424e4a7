"""Rate limits: token buckets per tenant and per token for mutations and expensive queries."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from studio_integrations.auth.request_limits import (
    Budget,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from tests.conftest import TokenFactory
from tests.governance.conftest import (
    REGISTER_PROVIDER,
    ServerFactory,
    client,
    provider_input,
    registry_counts,
)
from tests.support.backends import REDIS_URL, Backend, port_open, unavailable
from tests.support.graphql import error_codes
from tests.support.ws import init, receive, send, ws_connect


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budgets(tenant: int = 3, token: int = 3) -> list[Budget]:
    return [Budget("tenant", "t.acme", tenant), Budget("token", "k.alice", token)]


async def test_memory_bucket_refuses_when_empty_and_refills_with_time() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert [(await limiter.take(budgets())).allowed for _ in range(3)] == [True] * 3
    refused = await limiter.take(budgets())
    assert not refused.allowed and refused.refused_by in {"tenant", "token"}
    assert refused.retry_after == pytest.approx(20.0)  # 3 per minute: one every 20 s
    assert refused.retry_after_seconds == 20
    clock.now += 19.9
    assert not (await limiter.take(budgets())).allowed
    clock.now += 0.1
    assert (await limiter.take(budgets())).allowed
    clock.now += 3600  # refills to capacity, never beyond
    assert [(await limiter.take(budgets())).allowed for _ in range(4)] == [True] * 3 + [False]


async def test_a_refused_charge_costs_no_budget_anywhere() -> None:
    limiter = MemoryRateLimiter(Clock())
    # The token's budget (1) runs out first; the tenant's (5) must not be drained by refusals.
    assert (await limiter.take(budgets(tenant=5, token=1))).allowed
    for _ in range(10):
        refused = await limiter.take(budgets(tenant=5, token=1))
        assert not refused.allowed and refused.refused_by == "token"
    other_token = [Budget("tenant", "t.acme", 5), Budget("token", "k.bob", 5)]
    assert [(await limiter.take(other_token)).allowed for _ in range(5)] == [True] * 4 + [False]


async def test_a_charge_larger_than_the_bucket_takes_the_whole_bucket() -> None:
    limiter = MemoryRateLimiter(Clock())
    assert (await limiter.take(budgets(3, 3), cost=10)).allowed
    assert not (await limiter.take(budgets(3, 3))).allowed


async def test_zero_means_unlimited() -> None:
    limiter = MemoryRateLimiter(Clock())
    off = [Budget("tenant", "t.x", 0), Budget("token", "k.x", 0)]
    assert all([(await limiter.take(off)).allowed for _ in range(1000)])


def redis_limiter() -> RedisRateLimiter:
    if not port_open(REDIS_URL, 6379):
        unavailable("Redis at 127.0.0.1:6379")
    # A hang guard, not the service's 2 s: past its timeout the limiter fails open, and a
    # loaded machine (CI with both cores busy) let 15 of 20 through that way.
    return RedisRateLimiter(REDIS_URL, namespace=f"test-{uuid.uuid4().hex[:8]}", timeout=30)


async def test_redis_buckets_are_shared_atomic_and_all_or_nothing() -> None:
    # Two limiters on one Redis are two replicas: together they allow exactly the budget,
    # even when asked concurrently.
    replicas: list[RateLimiter] = [redis_limiter(), redis_limiter()]
    ns = replicas[0]._namespace  # type: ignore[attr-defined]
    replicas[1]._namespace = ns  # type: ignore[attr-defined]
    try:
        results = await asyncio.gather(
            *(replicas[i % 2].take(budgets(tenant=100, token=5)) for i in range(20))
        )
        assert sum(r.allowed for r in results) == 5
        refused = next(r for r in results if not r.allowed)
        assert refused.refused_by == "token"
        assert 0 < refused.retry_after <= 12  # 5 per minute: one every 12 s
        # The refusals drained nothing from the tenant's bucket: 95 remain for other tokens.
        # Redis's own clock refills it (one every 0.6 s) while this loop runs, so at least 95
        # pass before a refusal; had the 15 refusals drained it, only 80 would.
        other = [Budget("tenant", "t.acme", 100), Budget("token", "k.bob", 1000)]
        allowed = 0
        while (await replicas[0].take(other)).allowed:
            allowed += 1
            assert allowed < 200, "the tenant budget never ran out"
        assert allowed >= 95
    finally:
        for limiter in replicas:
            await limiter.aclose()


async def test_redis_outage_lets_requests_through() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", namespace="down")
    try:
        decision = await limiter.take(budgets(1, 1))
        assert decision.allowed
        assert (await limiter.take(budgets(1, 1))).allowed  # nothing was counted
    finally:
        await limiter.aclose()


# --- on the live server -----------------------------------------------------------------


async def register(http: httpx.AsyncClient, token: str, **overrides: Any) -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": REGISTER_PROVIDER, "variables": {"input": provider_input(**overrides)}},
        headers={"Authorization": f"Bearer {token}"},
    )


def assert_rate_limited(response: httpx.Response, limit: str) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    body: dict[str, Any] = response.json()
    assert body["data"] is None
    assert error_codes(body) == ["RATE_LIMITED"]
    extensions = body["errors"][0]["extensions"]
    assert extensions["limit"] == limit
    assert isinstance(extensions["retryAfter"], int) and extensions["retryAfter"] >= 1
    assert response.headers["Retry-After"] == str(extensions["retryAfter"])
    return extensions


async def test_mutations_per_token(limited_server: ServerFactory, make_token: TokenFactory) -> None:
    async with limited_server(token_mutations_per_minute=3) as server, client(server) as http:
        alice = make_token(subject="alice")
        for _ in range(3):
            response = await register(http, alice)
            assert response.status_code == 200
            assert response.json()["data"]["registerProvider"]["userErrors"] == []
        before = await registry_counts(server.services)
        extensions = assert_rate_limited(await register(http, alice), "token")
        assert extensions["retryAfter"] <= 20  # 3 per minute
        assert (
            await registry_counts(server.services) == before
        )  # the refused mutation wrote nothing
        # Another token of the same tenant has its own budget.
        bob = await register(http, make_token(subject="bob"))
        assert bob.status_code == 200 and bob.json()["data"]["registerProvider"]["provider"]
        # Queries are not mutations: alice can still read.
        read = await http.post(
            "/graphql",
            json={"query": "{ viewer { subject } }"},
            headers={"Authorization": f"Bearer {alice}"},
        )
        assert read.status_code == 200 and read.json()["data"]["viewer"]["subject"] == "alice"


async def test_mutations_per_tenant(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    async with (
        limited_server(tenant_mutations_per_minute=4, token_mutations_per_minute=100) as server,
        client(server) as http,
    ):
        for subject in ("alice", "alice", "bob", "bob"):
            assert (await register(http, make_token(subject=subject))).status_code == 200
        assert_rate_limited(await register(http, make_token(subject="carol")), "tenant")
        other_tenant = await register(http, make_token(tenant="globex", subject="carol"))
        assert other_tenant.status_code == 200


async def test_each_root_mutation_field_costs_one(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    double = """mutation ($a: RegisterProviderInput!, $b: RegisterProviderInput!) {
      a: registerProvider(input: $a) { provider { id } }
      b: registerProvider(input: $b) { provider { id } } }"""
    async with limited_server(token_mutations_per_minute=3) as server, client(server) as http:
        token = make_token()
        headers = {"Authorization": f"Bearer {token}"}
        variables = {"a": provider_input(), "b": provider_input()}
        first = await http.post(
            "/graphql", json={"query": double, "variables": variables}, headers=headers
        )
        assert first.status_code == 200 and first.json()["data"]["b"]["provider"]
        variables = {"a": provider_input(), "b": provider_input()}
        second = await http.post(
            "/graphql", json={"query": double, "variables": variables}, headers=headers
        )
        assert_rate_limited(second, "token")  # 2 + 2 > 3
        assert (await register(http, token)).status_code == 200  # the 1 left


async def test_expensive_queries_are_limited_and_cheap_ones_are_not(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    expensive = "{ providers(first: 60) { nodes { id } } }"  # 60 + 3
    cheap = "{ providers(first: 10) { nodes { id } } viewer { subject } }"  # 10 + 3
    async with (
        limited_server(expensive_query_cost=50, token_expensive_queries_per_minute=2) as server,
        client(server) as http,
    ):
        headers = {"Authorization": f"Bearer {make_token()}"}

        async def run(query: str) -> httpx.Response:
            return await http.post("/graphql", json={"query": query}, headers=headers)

        for _ in range(10):
            assert (await run(cheap)).status_code == 200
        for _ in range(2):
            response = await run(expensive)
            assert response.status_code == 200 and "errors" not in response.json()
        assert_rate_limited(await run(expensive), "token")
        assert (await run(cheap)).status_code == 200
        assert (await register(http, make_token())).status_code == 200  # a separate budget


async def test_replicas_share_the_budget_through_redis(
    limited_server: ServerFactory, make_token: TokenFactory, backend: Backend
) -> None:
    shared = {"token_mutations_per_minute": 2, "bus_namespace": f"ns-{uuid.uuid4().hex[:8]}"}
    token = make_token()
    async with (
        limited_server(**shared) as one,
        limited_server(**shared) as two,
        client(one) as http_one,
        client(two) as http_two,
    ):
        assert (await register(http_one, token)).status_code == 200
        assert (await register(http_two, token)).status_code == 200
        third = await register(http_one, token)
        if backend.broadcast_url.startswith("redis://"):
            assert_rate_limited(third, "token")  # the two replicas drew from one bucket
            assert_rate_limited(await register(http_two, token), "token")
        else:
            assert third.status_code == 200  # memory://: each process counts its own
            assert_rate_limited(await register(http_one, token), "token")


async def test_over_a_websocket_a_limited_mutation_is_an_error_message(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    async with limited_server(token_mutations_per_minute=1) as server:
        token = make_token()
        async with ws_connect(server.ws_url) as ws:
            assert (await init(ws, token))["type"] == "connection_ack"
            replies: dict[str, dict[str, Any]] = {}
            for n in range(2):
                payload = {"query": REGISTER_PROVIDER, "variables": {"input": provider_input()}}
                await send(ws, {"id": str(n), "type": "subscribe", "payload": payload})
                while str(n) not in replies:
                    message = await receive(ws)
                    if message["type"] != "complete":
                        replies[message["id"]] = message
            assert replies["0"]["type"] == "next"
            assert replies["0"]["payload"]["data"]["registerProvider"]["provider"]["id"]
            assert replies["1"]["type"] == "error"
            (error,) = replies["1"]["payload"]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert error["extensions"]["retryAfter"] >= 1
