"""End to end over a real WebSocket, with `gql` as the independent graphql-transport-ws
client: the server's own prober finds the fake provider failing and recovering, and the
subscriptions deliver it to their tenant only, filtered on the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.fakes.provider import Reply
from tests.health.conftest import VERIFY_PATH, World, establish, ok
from tests.support.backends import Backend
from tests.support.gqlws import Subscription, subscribe
from tests.support.live import LiveServer

HEALTH_CHANGED = """
subscription ($connectionId: ID, $providerId: ID) {
  healthChanged(connectionId: $connectionId, providerId: $providerId) {
    connection { id name status }
    connectionId providerId previousStatus status circuitState latencyMs errorRate
    occurredAt traceId runId
  }
}
"""

FAILURES = """
subscription ($category: FailureCategory, $connectionId: ID) {
  integrationFailures(category: $category, connectionId: $connectionId) {
    id category message escalation occurrences occurredAt deliveryId
    connection { id } run { id kind status httpStatus }
  }
}
"""

EXTERNAL_HEALTH = """
{ externalHealth { connections { connection { id } status circuitState } openCircuits } }
"""


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    # Fast probes and a short breaker and window, so the whole story takes seconds.
    return make_settings(
        backend,
        tmp_path,
        probe_interval_seconds=0.2,
        circuit_half_open_seconds=1,
        health_window_seconds=1.5,
        workers={"relay", "prober"},
    )


async def _until(sub: Subscription, field: str, done: Any, limit: int = 10) -> list[dict[str, Any]]:
    """Events until ``done(event)`` holds (at most ``limit``)."""
    seen = []
    for _ in range(limit):
        event = (await sub.next(timeout=15))[field]
        seen.append(event)
        if done(event):
            return seen
    raise AssertionError(f"never happened: {seen}")


async def test_failing_provider_reaches_its_tenants_subscribers_only(
    server: LiveServer, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    live = server.services.live_subscribers
    connection_id = await establish(http, world)
    acme = world.token
    globex = make_token(tenant="globex")
    async with (
        subscribe(
            server.ws_url,
            acme,
            HEALTH_CHANGED,
            {"connectionId": connection_id},
            live=live,
            tenant_id="acme",
        ) as health,
        subscribe(
            server.ws_url,
            acme,
            FAILURES,
            {"connectionId": connection_id},
            live=live,
            tenant_id="acme",
        ) as failures,
        subscribe(
            server.ws_url,
            acme,
            FAILURES,
            {"category": "AUTHENTICATION"},
            live=live,
            tenant_id="acme",
        ) as other_category,
        subscribe(
            server.ws_url,
            acme,
            HEALTH_CHANGED,
            {"providerId": "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ"},
            live=live,
            tenant_id="acme",
        ) as other_provider,
        subscribe(server.ws_url, globex, HEALTH_CHANGED, live=live, tenant_id="globex") as g1,
        subscribe(server.ws_url, globex, FAILURES, live=live, tenant_id="globex") as g2,
    ):
        world.fake.on(VERIFY_PATH, Reply(500, json={"error": "down"}))

        down = await _until(health, "healthChanged", lambda e: e["status"] == "UNHEALTHY")
        assert [(e["previousStatus"], e["status"]) for e in down] == [
            ("HEALTHY", "DEGRADED"),
            ("DEGRADED", "UNHEALTHY"),
        ]
        last = down[-1]
        assert last["connection"] == {
            "id": connection_id,
            "name": "HR production",
            "status": "DEGRADED",
        }
        assert (last["connectionId"], last["providerId"]) == (connection_id, world.provider_id)
        assert len(last["traceId"]) == 32
        assert last["errorRate"] >= 0.1

        first = (await failures.next(timeout=15))["integrationFailures"]
        assert (first["category"], first["escalation"], first["occurrences"]) == (
            "SERVER_ERROR",
            "OPEN",
            1,
        )
        assert first["connection"] == {"id": connection_id}
        assert first["run"]["kind"] == "PROBE"
        assert (first["run"]["status"], first["run"]["httpStatus"]) == ("FAILED", 500)
        assert first["deliveryId"] is None
        # The fifth failure opens the circuit and escalates the group.
        fifth = await _until(failures, "integrationFailures", lambda e: e["occurrences"] == 5)
        assert fifth[-1]["escalation"] == "ESCALATED"
        data = await ok(http, EXTERNAL_HEALTH, {}, acme)
        assert data["externalHealth"]["openCircuits"] == 1
        assert data["externalHealth"]["connections"] == [
            {"connection": {"id": connection_id}, "status": "UNHEALTHY", "circuitState": "OPEN"}
        ]

        # The provider recovers: the half-open trial closes the circuit, the failures age
        # out of the window, and the connection is HEALTHY (and ACTIVE) again.
        world.fake.on(VERIFY_PATH, Reply(json={"id": 7}))
        up = await _until(health, "healthChanged", lambda e: e["status"] == "HEALTHY")
        assert up[0]["previousStatus"] == "UNHEALTHY"
        assert up[-1]["circuitState"] == "CLOSED"
        assert up[-1]["connection"]["status"] == "ACTIVE"

        # Filters and tenants: nothing reached the others.
        for sub in (other_category, other_provider, g1, g2):
            assert await sub.nothing_within(0.2)
