"""The prober against the fake provider on a controlled clock: circuit, statuses, events,
failure escalation, snapshots, and the health queries."""

from __future__ import annotations

import httpx

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.health import Claim
from studio_integrations.services import Services
from studio_integrations.workers.health_prober import HealthProber
from tests.conftest import TokenFactory
from tests.fakes.provider import Reply
from tests.health.conftest import (
    PROBE_INTERVAL,
    VERIFY_PATH,
    Clock,
    World,
    establish,
    health_rows,
    make_prober,
    ok,
)
from tests.support.graphql import gql
from tests.support.waiting import until

EXTERNAL_HEALTH = """
query ($filter: ExternalHealthFilter) {
  externalHealth(filter: $filter) {
    connections {
      connection { id name status }
      status circuitState latencyP50Ms latencyP95Ms errorRate checkedAt consecutiveFailures
    }
    providers {
      provider { id key } providerId status connectionCount healthyCount degradedCount
      unhealthyCount openCircuits
    }
    openCircuits
  }
}
"""

FAILURES = """
query ($filter: IntegrationFailureFilter, $first: Int = 20, $after: String) {
  integrationFailures(filter: $filter, first: $first, after: $after) {
    nodes {
      id category message escalation occurrences occurredAt firstSeenAt resolvedAt
      connection { id } run { id kind status httpStatus } deliveryId delivery { id }
    }
    pageInfo { hasNextPage endCursor }
    groups { category count escalatedCount unresolvedCount }
  }
}
"""

TIMELINE = """
query ($id: ID!) {
  node(id: $id) { ... on IntegrationConnection { healthTimeline { status circuitState } } }
}
"""


async def probe(prober: HealthProber, clock: Clock, seconds: float = PROBE_INTERVAL) -> int:
    clock.advance(seconds)
    return await prober.probe_once()


async def test_circuit_statuses_events_and_escalation(
    services: Services,
    http: httpx.AsyncClient,
    world: World,
    prober: HealthProber,
    clock: Clock,
    make_token: TokenFactory,
) -> None:
    db = services.db
    connection_id = await establish(http, world)  # its live test is the first signal
    rows = await health_rows(db, connection_id)
    assert (rows.health.status, rows.health.circuit_state) == ("HEALTHY", "CLOSED")
    assert rows.changes == []

    # Not due yet: the test run was as good as a probe.
    assert await prober.probe_once() == 0
    assert await probe(prober, clock) == 1
    rows = await health_rows(db, connection_id)
    assert [(r.kind, r.status) for r in rows.runs] == [
        ("PROBE", "SUCCEEDED"),
        ("TEST", "SUCCEEDED"),
    ]
    assert rows.runs[0].triggered_by == "studio-integrations"  # the system actor

    # The provider starts answering 500: one attempt per probe (no retries), each a failure.
    world.fake.on(VERIFY_PATH, Reply(500, json={"error": "boom"}))
    calls_before = len(world.fake.seen(VERIFY_PATH))
    seen = []
    for _ in range(5):
        assert await probe(prober, clock) == 1
        rows = await health_rows(db, connection_id)
        seen.append((rows.health.status, rows.health.circuit_state))
    assert len(world.fake.seen(VERIFY_PATH)) == calls_before + 5
    assert seen == [
        ("DEGRADED", "CLOSED"),  # 1 of 3 calls failed: ≥ 10 %
        ("DEGRADED", "CLOSED"),
        ("UNHEALTHY", "CLOSED"),  # the last 3 probes failed
        ("UNHEALTHY", "CLOSED"),
        ("UNHEALTHY", "OPEN"),  # 5 consecutive failures
    ]
    assert rows.connection.status == "DEGRADED"  # the connection follows its health
    # One event per change of status, none for the circuit alone.
    assert [(c["previousStatus"], c["status"]) for c in rows.changes] == [
        ("HEALTHY", "DEGRADED"),
        ("DEGRADED", "UNHEALTHY"),
    ]
    assert rows.changes[-1]["runId"] == rows.runs[2].id  # the third failed probe decided it
    assert rows.changes[-1]["providerId"] == world.provider_id

    # Failures: one per failed run, grouped; the fifth escalates the whole group.
    assert [(f.category, f.occurrences, f.escalation_status) for f in rows.failures] == [
        ("SERVER_ERROR", n, "ESCALATED") for n in range(1, 6)
    ]
    assert {f.run_id for f in rows.failures} == {r.id for r in rows.runs[:5]}

    # The queries see it: the open circuit, the provider, the grouped failures.
    token = world.token
    data = await ok(http, EXTERNAL_HEALTH, {}, token)
    view = data["externalHealth"]
    assert view["openCircuits"] == 1
    [entry] = view["connections"]
    assert entry["connection"] == {
        "id": connection_id,
        "name": "HR production",
        "status": "DEGRADED",
    }
    assert (entry["status"], entry["circuitState"], entry["consecutiveFailures"]) == (
        "UNHEALTHY",
        "OPEN",
        5,
    )
    assert entry["errorRate"] == round(5 / 7, 4)
    [provider] = view["providers"]
    assert provider["provider"]["id"] == world.provider_id
    assert (provider["status"], provider["unhealthyCount"], provider["openCircuits"]) == (
        "UNHEALTHY",
        1,
        1,
    )
    data = await ok(http, EXTERNAL_HEALTH, {"filter": {"status": "HEALTHY"}}, token)
    assert data["externalHealth"]["connections"] == []

    data = await ok(http, FAILURES, {"filter": {"connectionId": connection_id}, "first": 2}, token)
    page = data["integrationFailures"]
    assert page["pageInfo"]["hasNextPage"] is True
    newest = page["nodes"][0]
    assert (newest["category"], newest["escalation"], newest["occurrences"]) == (
        "SERVER_ERROR",
        "ESCALATED",
        5,
    )
    assert newest["run"] == {
        "id": rows.runs[0].id,
        "kind": "PROBE",
        "status": "FAILED",
        "httpStatus": 500,
    }
    assert newest["connection"] == {"id": connection_id}
    assert (newest["deliveryId"], newest["delivery"]) == (None, None)  # a run's failure
    assert page["groups"] == [
        {"category": "SERVER_ERROR", "count": 5, "escalatedCount": 5, "unresolvedCount": 5}
    ]
    data = await ok(http, FAILURES, {"filter": {"category": "AUTHENTICATION"}}, token)
    assert data["integrationFailures"]["nodes"] == []
    assert data["integrationFailures"]["groups"] == []

    # Another tenant sees none of it; health:read is required.
    other = make_token(tenant="globex")
    data = await ok(http, EXTERNAL_HEALTH, {}, other)
    assert data["externalHealth"] == {"connections": [], "providers": [], "openCircuits": 0}
    data = await ok(http, FAILURES, {}, other)
    assert data["integrationFailures"]["nodes"] == []
    body = await gql(http, EXTERNAL_HEALTH, {}, token=make_token(scopes="connections:read"))
    assert body["data"]["externalHealth"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    # Open: the provider is left alone until the circuit may half-open (30 s).
    world.fake.on(VERIFY_PATH, Reply(json={"id": 7}))
    calls = len(world.fake.seen(VERIFY_PATH))
    assert await probe(prober, clock) == 0
    assert await probe(prober, clock) == 0
    assert len(world.fake.seen(VERIFY_PATH)) == calls
    # Half-open: the trial succeeds and closes the circuit; the window still holds failures.
    assert await probe(prober, clock) == 1
    rows = await health_rows(db, connection_id)
    assert (rows.health.status, rows.health.circuit_state) == ("DEGRADED", "CLOSED")
    assert rows.connection.status == "DEGRADED"
    # Once the failures leave the 5-minute window: HEALTHY, ACTIVE, failures resolved.
    assert await probe(prober, clock, 301) == 1
    rows = await health_rows(db, connection_id)
    assert (rows.health.status, rows.health.circuit_state) == ("HEALTHY", "CLOSED")
    assert rows.connection.status == "ACTIVE"
    assert [(c["previousStatus"], c["status"]) for c in rows.changes] == [
        ("HEALTHY", "DEGRADED"),
        ("DEGRADED", "UNHEALTHY"),
        ("UNHEALTHY", "DEGRADED"),
        ("DEGRADED", "HEALTHY"),
    ]
    assert {f.escalation_status for f in rows.failures} == {"RESOLVED"}
    assert all(f.resolved_at is not None for f in rows.failures)

    # The timeline has a snapshot for every change of status or circuit.
    data = await ok(http, TIMELINE, {"id": connection_id}, token)
    points = [(p["status"], p["circuitState"]) for p in data["node"]["healthTimeline"]]
    assert points == [
        ("HEALTHY", "CLOSED"),
        ("DEGRADED", "CLOSED"),
        ("UNHEALTHY", "CLOSED"),
        ("UNHEALTHY", "OPEN"),
        ("DEGRADED", "CLOSED"),
        ("HEALTHY", "CLOSED"),
    ]


async def test_a_new_failure_after_recovery_starts_a_new_group(
    services: Services,
    http: httpx.AsyncClient,
    world: World,
    prober: HealthProber,
    clock: Clock,
) -> None:
    db = services.db
    connection_id = await establish(http, world)
    world.fake.on(VERIFY_PATH, Reply(503))
    assert await probe(prober, clock) == 1
    world.fake.on(VERIFY_PATH, Reply(json={}))
    assert await probe(prober, clock, 301) == 1  # recovered: the group resolves
    world.fake.on(VERIFY_PATH, Reply(503))
    assert await probe(prober, clock) == 1
    rows = await health_rows(db, connection_id)
    assert [(f.occurrences, f.escalation_status) for f in rows.failures] == [
        (1, "RESOLVED"),
        (1, "OPEN"),
    ]


async def test_retired_connections_are_not_probed(
    services: Services,
    http: httpx.AsyncClient,
    world: World,
    prober: HealthProber,
    clock: Clock,
) -> None:
    connection_id = await establish(http, world)
    retire = """
    mutation ($id: ID!) {
      retireConnection(input: {id: $id, confirmName: "HR production"}) { userErrors { code } }
    }
    """
    data = await ok(http, retire, {"id": connection_id}, world.token)
    assert data["retireConnection"]["userErrors"] == []
    calls = len(world.fake.seen(VERIFY_PATH))
    assert await probe(prober, clock, 3600) == 0
    assert len(world.fake.seen(VERIFY_PATH)) == calls


async def test_a_claim_that_raced_the_circuit_opening_is_released_without_a_call(
    services: Services, http: httpx.AsyncClient, world: World, clock: Clock, prober: HealthProber
) -> None:
    """A claim taken just before the circuit opened finds it OPEN: the connection is put
    back until the circuit half-opens, and the provider is not called. The prober's reads
    must not hold SQLite's write lock meanwhile: its release (another connection) waited
    out the busy timeout for it, and every writer of the process behind it (a stuck outbox
    relay at shutdown). A 1 s busy timeout makes that wait an error."""
    db = Database(services.db.url, sqlite_busy_timeout=1)
    racer = make_prober(services, clock, db=db)
    try:
        connection_id = await establish(http, world)
        world.fake.on(VERIFY_PATH, Reply(500))
        for _ in range(5):
            assert await probe(prober, clock) == 1
        rows = await health_rows(services.db, connection_id)
        assert rows.health.circuit_state == "OPEN"
        assert rows.health.circuit_opened_at is not None
        calls = len(world.fake.seen(VERIFY_PATH))

        await racer.probe(Claim(connection_id, "acme", clock()))

        rows = await health_rows(services.db, connection_id)
        assert len(world.fake.seen(VERIFY_PATH)) == calls
        assert rows.health.lease_until is None
        opened = rows.health.circuit_opened_at.replace(tzinfo=None)
        assert rows.health.next_probe_at.replace(tzinfo=None) == (
            opened + racer.policy.half_open_after
        )
    finally:
        await db.dispose()


async def test_stopping_cancels_the_provider_call_not_the_database_work(
    services: Services, http: httpx.AsyncClient, world: World, clock: Clock, prober: HealthProber
) -> None:
    """``stop`` cancels a probe's provider call and releases its claim for the next probe at
    its usual time; the loop itself ends on its own, never cancelled inside a statement
    (a cancellation inside an SQLite statement could strand the write lock: every other
    writer, the outbox relay first, waited behind it at shutdown)."""
    connection_id = await establish(http, world)
    runs = len((await health_rows(services.db, connection_id)).runs)
    world.fake.on(VERIFY_PATH, Reply(json={}, delay=120))
    calls = len(world.fake.seen(VERIFY_PATH))
    clock.advance(PROBE_INTERVAL)
    claimed_at = clock()
    prober.start()
    await until(lambda: len(world.fake.seen(VERIFY_PATH)) > calls, "the probe's call")
    task = prober._task
    assert task is not None

    await prober.stop(grace=60)

    assert task.done() and not task.cancelled()
    rows = await health_rows(services.db, connection_id)
    assert len(rows.runs) == runs  # a cancelled call is no sample
    assert rows.health.lease_until is None
    assert rows.health.next_probe_at.replace(tzinfo=None) == (claimed_at + prober.interval).replace(
        tzinfo=None
    )
