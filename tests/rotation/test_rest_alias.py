"""POST /integrations/credentials/rotate: the rotateCredential mutation over plain HTTP —
same token, scope, checks, rotation, audit and answer."""

from __future__ import annotations

from typing import Any

import httpx

from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.rotation.conftest import (
    AUDIT,
    ROTATE,
    TRACE_ID,
    TRACEPARENT,
    World,
    counts,
    establish,
    ok,
    rotate,
)
from tests.support.graphql import error_codes, gql

PATH = "/integrations/credentials/rotate"
NEW_KEY = "key-rest-cccccccccccc"


async def post(
    http: httpx.AsyncClient, token: str | None, body: Any, **headers: str
) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, bytes | str):
        headers.setdefault("Content-Type", "application/json")
        return await http.post(PATH, content=body, headers=headers)
    return await http.post(PATH, json=body, headers=headers)


async def test_rest_and_mutation_give_the_same_results(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    vault = services.vault
    await establish(http, world)
    new = await vault.set_secret("fake-hr-key", NEW_KEY, tags={"studio-tenant": "acme"})
    world.accepted.add(NEW_KEY)

    response = await post(
        http, world.token, {"credentialId": world.credential_id}, traceparent=TRACEPARENT
    )
    assert response.status_code == 200, response.text
    rest = response.json()
    assert rest["userErrors"] == []
    assert rest["rotation"]["status"] == "PROMOTED"
    assert rest["rotation"]["newVersion"] == new.version
    assert rest["rotation"]["requestedBy"] == "alice"
    assert [r["status"] for r in rest["rotation"]["verificationRuns"]] == ["SUCCEEDED"]
    assert rest["credential"]["currentVersion"] == new.version
    assert NEW_KEY not in response.text

    # Audited like the mutation: the caller and the traceparent's trace id.
    events = (await ok(http, AUDIT, {"subjectId": world.credential_id}, world.token))[
        "auditEvents"
    ]["nodes"]
    rotated = [e for e in events if e["type"] == "CredentialRotated"]
    assert [(e["actor"]["subject"], e["traceId"]) for e in rotated] == [("alice", TRACE_ID)]

    # Now nothing newer is in the vault: the same userError from both, 422 over REST.
    response = await post(http, world.token, {"credentialId": world.credential_id})
    assert response.status_code == 422
    mutation = await rotate(http, world.token, world.credential_id)
    assert response.json() == {
        "rotation": None,
        "credential": None,
        "userErrors": mutation["userErrors"],
    }
    assert [e["code"] for e in mutation["userErrors"]] == ["NO_NEWER_VERSION"]

    # An unknown (or another tenant's) credential: 404 and the mutation's userError.
    missing = "cred_01JD8ZZZZZZZZZZZZZZZZZZZZZ"
    response = await post(http, world.token, {"credentialId": missing})
    assert response.status_code == 404
    assert response.json()["userErrors"] == (await rotate(http, world.token, missing))["userErrors"]


async def test_both_are_refused_without_credentials_rotate_and_write_nothing(
    services: Services, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    db, vault = services.db, services.vault
    await vault.set_secret("fake-hr-key", NEW_KEY, tags={"studio-tenant": "acme"})
    reader = make_token(scopes="credentials:read credentials:write connections:write")
    before = await counts(db)

    response = await post(http, reader, {"credentialId": world.credential_id})
    assert response.status_code == 403
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["FORBIDDEN"]

    body = await gql(http, ROTATE, {"id": world.credential_id}, token=reader)
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"] == {"rotateCredential": None}

    assert await counts(db) == before


async def test_authentication_and_body_errors(
    services: Services, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    db = services.db
    before = await counts(db)
    body = {"credentialId": world.credential_id}

    response = await post(http, None, body)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    response = await post(http, "not-a-token", body)
    assert response.status_code == 401
    assert (
        await http.get(PATH, headers={"Authorization": f"Bearer {world.token}"})
    ).status_code == 405

    for bad in (
        b"{not json",
        b"[]",
        b'{"credentialId": 7}',
        b'{"credentialId": ""}',
        b'{"credentialId": "x", "extra": 1}',
        b"{}",
    ):
        response = await post(http, world.token, bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    response = await post(
        http, world.token, b'{"credentialId": "x"}', **{"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert await counts(db) == before


async def test_verification_runs_answer_only_callers_who_may_read_runs(
    services: Services, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    """Runs are connection data (``connections:read``). A rotate-only token rotates over
    REST and is answered without the runs; through GraphQL the field is null and FORBIDDEN
    while the rest of the payload arrives."""
    vault = services.vault
    await establish(http, world)
    rotator = make_token(scopes="credentials:rotate")

    new = await vault.set_secret("fake-hr-key", NEW_KEY, tags={"studio-tenant": "acme"})
    world.accepted.add(NEW_KEY)
    response = await post(http, rotator, {"credentialId": world.credential_id})
    assert response.status_code == 200, response.text
    rotation = response.json()["rotation"]
    assert (rotation["status"], rotation["newVersion"]) == ("PROMOTED", new.version)
    assert "verificationRuns" not in rotation

    await vault.set_secret("fake-hr-key", NEW_KEY + "-2", tags={"studio-tenant": "acme"})
    world.accepted.add(NEW_KEY + "-2")
    body = await gql(http, ROTATE, {"id": world.credential_id}, token=rotator)
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["rotateCredential", "rotation", "verificationRuns"]
    payload = body["data"]["rotateCredential"]
    assert payload["rotation"]["status"] == "PROMOTED"
    assert payload["rotation"]["verificationRuns"] is None
