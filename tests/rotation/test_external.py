"""EXTERNAL rotation against a provider that accepts only certain keys: a bad new version is
rejected and the old one stays in use; a good one is promoted and used from then on; both
are audited with the caller and the trace id, and both arrive on auditEvents."""

from __future__ import annotations

import json

import httpx

from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.connections.conftest import GOOD_KEY, VERIFY_PATH
from tests.rotation.conftest import (
    AUDIT,
    CREDENTIAL,
    OTHER_TRACE_ID,
    OTHER_TRACEPARENT,
    ROTATION_NODE,
    TEST,
    TRACE_ID,
    TRACEPARENT,
    World,
    counts,
    establish,
    ok,
    rotate,
)
from tests.support.gqlws import subscribe
from tests.support.live import LiveServer

BAD_KEY = "key-bad-aaaaaaaaaaaa"
NEW_GOOD_KEY = "key-good-bbbbbbbbbbbb"
SUBSCRIPTION = """
subscription { auditEvents(types: ["CredentialRotated", "CredentialRotationFailed"]) {
  type traceId actor { subject kind } subject { type id } data } }
"""


async def test_bad_version_fails_and_keeps_old_good_version_is_promoted_and_used(
    server: LiveServer, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    vault, db, token = server.services.vault, server.services.db, world.token
    connection_id = await establish(http, world)
    old_version = (await ok(http, CREDENTIAL, {"id": world.credential_id}, token))["node"][
        "currentVersion"
    ]

    live = server.services.live_subscribers
    async with subscribe(server.ws_url, token, SUBSCRIPTION, live=live, tenant_id="acme") as live:
        # --- a new version the provider refuses ----------------------------------------
        bad = await vault.set_secret("fake-hr-key", BAD_KEY, tags={"studio-tenant": "acme"})
        before = await counts(db)
        payload = await rotate(http, token, world.credential_id, TRACEPARENT)
        assert payload["userErrors"] == []
        rotation = payload["rotation"]
        assert rotation["status"] == "FAILED"
        assert (rotation["previousVersion"], rotation["newVersion"]) == (old_version, bad.version)
        assert rotation["requestedBy"] == "alice"
        assert rotation["finishedAt"] is not None and rotation["leaseUntil"] is None
        assert "verification failed on 1 of 1" in rotation["failureReason"]
        (run,) = rotation["verificationRuns"]
        assert (run["kind"], run["status"], run["errorCategory"], run["httpStatus"]) == (
            "VERIFICATION",
            "FAILED",
            "AUTHENTICATION",
            401,
        )
        assert (run["connectionId"], run["credentialVersion"], run["rotationId"]) == (
            connection_id,
            bad.version,
            rotation["id"],
        )
        assert world.fake.seen(VERIFY_PATH)[-1].headers["x-api-key"] == BAD_KEY
        assert payload["credential"]["currentVersion"] == old_version
        assert payload["credential"]["lastRotatedAt"] is None
        after = await counts(db)
        assert (after.rotations, after.runs, after.failures) == (
            before.rotations + 1,
            before.runs + 1,
            before.failures + 1,
        )
        failed_event = await live.next()
        assert failed_event["auditEvents"]["type"] == "CredentialRotationFailed"
        assert failed_event["auditEvents"]["data"]["rotationId"] == rotation["id"]

        # The connection keeps working on the old version.
        data = await ok(http, TEST, {"id": connection_id}, token)
        assert data["testConnection"]["run"]["status"] == "SUCCEEDED"
        assert data["testConnection"]["run"]["credentialVersion"] == old_version
        assert world.fake.seen(VERIFY_PATH)[-1].headers["x-api-key"] == GOOD_KEY

        # --- a new version the provider accepts -----------------------------------------
        good = await vault.set_secret("fake-hr-key", NEW_GOOD_KEY, tags={"studio-tenant": "acme"})
        world.accepted.add(NEW_GOOD_KEY)
        payload = await rotate(http, token, world.credential_id, OTHER_TRACEPARENT)
        promoted = payload["rotation"]
        assert promoted["status"] == "PROMOTED", promoted
        assert (promoted["previousVersion"], promoted["newVersion"]) == (old_version, good.version)
        assert [r["status"] for r in promoted["verificationRuns"]] == ["SUCCEEDED"]
        assert payload["credential"]["currentVersion"] == good.version
        assert payload["credential"]["lastRotatedAt"] is not None
        assert world.fake.seen(VERIFY_PATH)[-1].headers["x-api-key"] == NEW_GOOD_KEY
        rotated_event = await live.next()
        assert rotated_event["auditEvents"]["type"] == "CredentialRotated"
        assert rotated_event["auditEvents"]["traceId"] == OTHER_TRACE_ID

    # The next test uses the new version; the old key is no longer sent.
    world.accepted.discard(GOOD_KEY)
    data = await ok(http, TEST, {"id": connection_id}, token)
    assert data["testConnection"]["run"]["status"] == "SUCCEEDED"
    assert data["testConnection"]["run"]["credentialVersion"] == good.version
    assert world.fake.seen(VERIFY_PATH)[-1].headers["x-api-key"] == NEW_GOOD_KEY

    # Both rotations are readable by id and listed on the credential, newest first.
    node = (await ok(http, ROTATION_NODE, {"id": rotation["id"]}, token))["node"]
    assert node["status"] == "FAILED" and node["newVersion"] == bad.version
    credential = (await ok(http, CREDENTIAL, {"id": world.credential_id}, token))["node"]
    assert [r["id"] for r in credential["rotations"]] == [promoted["id"], rotation["id"]]
    assert credential["lastRotation"] == {"id": promoted["id"], "status": "PROMOTED"}

    # Both are in the audit log with the actor and the trace id; versions, never values.
    events = (await ok(http, AUDIT, {"subjectId": world.credential_id}, token))["auditEvents"][
        "nodes"
    ]
    by_type = {e["type"]: e for e in events}
    failed = by_type["CredentialRotationFailed"]
    assert (failed["actor"], failed["traceId"]) == ({"subject": "alice", "kind": "USER"}, TRACE_ID)
    assert failed["data"]["newVersion"] == bad.version
    assert failed["data"]["verificationRuns"][0]["errorCategory"] == "AUTHENTICATION"
    ok_event = by_type["CredentialRotated"]
    assert (ok_event["actor"], ok_event["traceId"]) == (
        {"subject": "alice", "kind": "USER"},
        OTHER_TRACE_ID,
    )
    assert ok_event["data"]["previousVersion"] == old_version
    assert ok_event["data"]["newVersion"] == good.version
    dumped = json.dumps(events)
    for value in (BAD_KEY, NEW_GOOD_KEY, GOOD_KEY):
        assert value not in dumped


async def test_a_foreign_or_disabled_newer_version_is_not_adopted(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    vault, db = services.vault, services.db
    # Another tenant's version and a disabled one are newer than the current version.
    disabled = await vault.set_secret("fake-hr-key", "k-disabled", tags={"studio-tenant": "acme"})
    await vault.update_properties("fake-hr-key", disabled.version, enabled=False)
    await vault.set_secret("fake-hr-key", "k-foreign", tags={"studio-tenant": "globex"})
    before = await counts(db)
    payload = await rotate(http, world.token, world.credential_id)
    assert payload["rotation"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("input.credentialId", "NO_NEWER_VERSION")
    ]
    assert await counts(db) == before
