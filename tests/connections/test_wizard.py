"""The Studio's wizard path over HTTP against a fake provider on loopback: establish → test
(passing, then failing with categorised attempts) → detail with runs → retire."""

from __future__ import annotations

import httpx

from studio_integrations.services import Services
from tests.connections.conftest import (
    AUDIT,
    CONNECTIONS,
    ESTABLISH,
    GOOD_KEY,
    NODE,
    RETIRE,
    TEST,
    VERIFY_PATH,
    World,
    counts,
    establish_input,
    ok,
)
from tests.fakes.provider import Reply


async def test_wizard_establish_test_detail_retire(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    fake, token = world.fake, world.token

    # Establish with a live test: the secret is resolved server-side and sent to the provider.
    data = await ok(
        http, ESTABLISH, {"input": establish_input(world.provider_id, world.credential_id)}, token
    )
    payload = data["establishConnection"]
    assert payload["userErrors"] == []
    connection = payload["connection"]
    connection_id = connection["id"]
    assert connection_id.startswith("conn_")
    assert (connection["status"], connection["name"], connection["projectId"]) == (
        "ACTIVE",
        "HR production",
        "payroll",
    )
    assert connection["configuration"] == {"account": "acme-1"}
    assert connection["provider"]["id"] == world.provider_id
    assert connection["credential"]["id"] == world.credential_id
    assert connection["viewerCan"] == {"test": True, "update": True, "retire": True}
    test_run = payload["testRun"]
    assert (test_run["kind"], test_run["status"], test_run["httpStatus"]) == (
        "TEST",
        "SUCCEEDED",
        200,
    )
    assert test_run["externalRef"] == "req-ok"
    assert test_run["credentialVersion"] == connection["credential"]["currentVersion"]
    assert [a["number"] for a in test_run["attempts"]] == [1]
    seen = fake.seen(VERIFY_PATH)
    assert len(seen) == 1
    assert seen[0].headers["x-api-key"] == GOOD_KEY

    # Test again, passing.
    data = await ok(http, TEST, {"id": connection_id}, token)
    assert data["testConnection"]["userErrors"] == []
    assert data["testConnection"]["run"]["status"] == "SUCCEEDED"

    # The provider starts failing: 503 twice (retried), then 401 (not retried).
    fake.on(
        VERIFY_PATH,
        Reply(503, json={"e": 1}, headers={"X-Request-Id": "req-503a"}),
        Reply(503, json={"e": 2}, headers={"X-Request-Id": "req-503b"}),
        Reply(401, json={"e": 3}, headers={"X-Request-Id": "req-401"}),
    )
    world.accepted.clear()  # keys are refused from now on, but the 503s come first
    world.accepted.add(GOOD_KEY)
    data = await ok(http, TEST, {"id": connection_id}, token)
    failed = data["testConnection"]["run"]
    assert data["testConnection"]["userErrors"] == []  # a failed test is a result
    assert (failed["status"], failed["errorCategory"], failed["httpStatus"]) == (
        "FAILED",
        "AUTHENTICATION",
        401,
    )
    assert failed["externalRef"] == "req-401"
    assert [(a["number"], a["httpStatus"], a["errorCategory"]) for a in failed["attempts"]] == [
        (1, 503, "SERVER_ERROR"),
        (2, 503, "SERVER_ERROR"),
        (3, 401, "AUTHENTICATION"),
    ]
    assert [a["externalRef"] for a in failed["attempts"]] == ["req-503a", "req-503b", "req-401"]
    assert all(a["latencyMs"] >= 0 for a in failed["attempts"])

    # Detail: runs newest first with their attempts.
    data = await ok(http, NODE, {"id": connection_id}, token)
    detail = data["node"]
    runs = detail["runs"]["nodes"]
    assert [r["status"] for r in runs] == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert runs[0]["id"] == failed["id"]
    assert len(runs[0]["attempts"]) == 3

    # The list shows it too.
    data = await ok(http, CONNECTIONS, {"filter": {"projectId": "payroll"}}, token)
    assert [c["id"] for c in data["integrationConnections"]["nodes"]] == [connection_id]

    # Retire: a wrong confirmation changes nothing; the right one retires for good.
    before = await counts(services.db)
    data = await ok(http, RETIRE, {"id": connection_id, "confirmName": "HR prod"}, token)
    assert data["retireConnection"]["connection"] is None
    assert [e["code"] for e in data["retireConnection"]["userErrors"]] == ["CONFIRMATION_MISMATCH"]
    assert await counts(services.db) == before
    data = await ok(http, RETIRE, {"id": connection_id, "confirmName": "HR production"}, token)
    retired = data["retireConnection"]["connection"]
    assert retired["status"] == "RETIRED"
    assert retired["retiredAt"] is not None
    assert retired["viewerCan"] == {"test": False, "update": False, "retire": False}

    # Retired is final: no test (and no outbound call), no second retirement.
    calls = len(fake.seen(VERIFY_PATH))
    data = await ok(http, TEST, {"id": connection_id}, token)
    assert [e["code"] for e in data["testConnection"]["userErrors"]] == ["CONNECTION_RETIRED"]
    data = await ok(http, RETIRE, {"id": connection_id, "confirmName": "HR production"}, token)
    assert [e["code"] for e in data["retireConnection"]["userErrors"]] == ["CONNECTION_RETIRED"]
    assert len(fake.seen(VERIFY_PATH)) == calls

    # The audit trail, newest first, with actor and trace id on each event.
    data = await ok(http, AUDIT, {"subjectId": connection_id}, token)
    events = data["auditEvents"]["nodes"]
    assert [e["type"] for e in events] == [
        "IntegrationConnectionRetired",
        "IntegrationConnectionTested",
        # The failed test is a health signal: written in its transaction, just before it.
        "ConnectionHealthChanged",
        "IntegrationConnectionTested",
        "IntegrationConnectionEstablished",
    ]
    assert all(e["actor"] == {"subject": "alice", "kind": "USER"} for e in events)
    assert all(len(e["traceId"]) == 32 for e in events)
    assert events[1]["data"]["status"] == "FAILED"
    assert events[1]["data"]["errorCategory"] == "AUTHENTICATION"
    # One failure in three runs: DEGRADED (error rate ≥ 10 %), the circuit still closed.
    health = events[2]["data"]
    assert (health["previousStatus"], health["status"]) == ("HEALTHY", "DEGRADED")
    assert (health["circuitState"], health["runKind"]) == ("CLOSED", "TEST")


async def test_failed_test_on_establish_leaves_no_connection_in_the_lists(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    world.accepted.clear()  # the provider refuses the key
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id)},
        world.token,
    )
    payload = data["establishConnection"]
    assert [e["code"] for e in payload["userErrors"]] == ["CONNECTION_TEST_FAILED"]
    assert payload["userErrors"][0]["field"] == "input.runTest"
    run = payload["testRun"]
    assert (run["status"], run["errorCategory"], run["httpStatus"]) == (
        "FAILED",
        "AUTHENTICATION",
        401,
    )
    assert payload["connection"] is None  # nothing was established
    # The attempt is kept with its run for diagnosis, reachable from the answer's run …
    data = await ok(http, NODE, {"id": run["connectionId"]}, world.token)
    kept = data["node"]
    assert (kept["status"], kept["retiredReason"]) == ("RETIRED", "TEST_FAILED")
    assert [r["id"] for r in kept["runs"]["nodes"]] == [run["id"]]
    # Its failure is in the feed, and cannot be re-tested: the attempt is retired.
    data = await ok(
        http,
        "{ integrationFailures { nodes { runId viewerCan { retest } } } }",
        {},
        world.token,
    )
    assert data["integrationFailures"]["nodes"] == [
        {"runId": run["id"], "viewerCan": {"retest": False}}
    ]
    # … but no list shows it as a connection, whatever the filter.
    for flt in ({}, {"status": "ACTIVE"}, {"status": "RETIRED"}, {"search": "HR"}):
        data = await ok(http, CONNECTIONS, {"filter": flt}, world.token)
        assert data["integrationConnections"]["nodes"] == [], flt

    # The same name can be established once the provider accepts the key.
    world.accepted.add(GOOD_KEY)
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id)},
        world.token,
    )
    assert data["establishConnection"]["userErrors"] == []
    assert data["establishConnection"]["connection"]["status"] == "ACTIVE"

    data = await ok(http, AUDIT, {"subjectId": kept["id"]}, world.token)
    assert [e["type"] for e in data["auditEvents"]["nodes"]] == ["IntegrationConnectionTested"]


async def test_establish_without_test_makes_no_outbound_call(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(world.provider_id, world.credential_id, runTest=False)},
        world.token,
    )
    assert data["establishConnection"]["userErrors"] == []
    assert data["establishConnection"]["testRun"] is None
    assert data["establishConnection"]["connection"]["status"] == "ACTIVE"
    assert world.fake.seen(VERIFY_PATH) == []
