"""Bad input and missing scopes: userErrors (or FORBIDDEN) and nothing written, no event.
setRotationPolicy's happy path and its event."""

from __future__ import annotations

import httpx

from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.rotation.conftest import (
    ALERTS,
    AUDIT,
    SET_POLICY,
    World,
    counts,
    ok,
    register_credential,
    rotate,
)
from tests.support.graphql import error_codes, gql

MISSING = "cred_01JD8ZZZZZZZZZZZZZZZZZZZZZ"


async def test_unknown_malformed_and_foreign_credentials_look_alike(
    services: Services, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    db = services.db
    globex = make_token(tenant="globex")
    foreign_id, _ = await register_credential(
        http, globex, services.vault, "globex-key", "g", tenant="globex"
    )
    await services.vault.set_secret("globex-key", "g2", tags={"studio-tenant": "globex"})
    before = await counts(db)
    answers = []
    for credential_id in (MISSING, foreign_id, "not-an-id", "conn_01JD8ZZZZZZZZZZZZZZZZZZZZZ"):
        payload = await rotate(http, world.token, credential_id)
        assert payload["rotation"] is None and payload["credential"] is None
        answers.append(payload["userErrors"])
        policy = (
            await ok(
                http,
                SET_POLICY,
                {
                    "input": {
                        "credentialId": credential_id,
                        "cadenceDays": 30,
                        "expiryWarningDays": 7,
                    }
                },
                world.token,
            )
        )["setRotationPolicy"]
        assert policy["credential"] is None
        answers.append(policy["userErrors"])
    assert all(
        a
        == [
            {
                "field": "input.credentialId",
                "code": "CREDENTIAL_NOT_FOUND",
                "message": "no such credential",
            }
        ]
        for a in answers
    ), answers
    assert await counts(db) == before


async def test_policy_out_of_range(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    db = services.db
    before = await counts(db)
    cases = [
        ((0, 7), [("input.cadenceDays", "OUT_OF_RANGE")]),
        ((731, 7), [("input.cadenceDays", "OUT_OF_RANGE")]),
        ((30, 0), [("input.expiryWarningDays", "OUT_OF_RANGE")]),
        ((400, 366), [("input.expiryWarningDays", "OUT_OF_RANGE")]),
        ((30, 30), [("input.expiryWarningDays", "OUT_OF_RANGE")]),
        (
            (0, 400),
            [("input.cadenceDays", "OUT_OF_RANGE"), ("input.expiryWarningDays", "OUT_OF_RANGE")],
        ),
    ]
    for (cadence, warning), expected in cases:
        data = await ok(
            http,
            SET_POLICY,
            {
                "input": {
                    "credentialId": world.credential_id,
                    "cadenceDays": cadence,
                    "expiryWarningDays": warning,
                }
            },
            world.token,
        )
        errors = data["setRotationPolicy"]["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == expected, (cadence, warning, errors)
    # Unknown id and a bad policy: both reported at once.
    data = await ok(
        http,
        SET_POLICY,
        {"input": {"credentialId": MISSING, "cadenceDays": 0, "expiryWarningDays": 7}},
        world.token,
    )
    assert [e["code"] for e in data["setRotationPolicy"]["userErrors"]] == [
        "CREDENTIAL_NOT_FOUND",
        "OUT_OF_RANGE",
    ]
    assert await counts(db) == before


async def test_set_rotation_policy_changes_it_once_with_its_event(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    db = services.db
    variables = {
        "input": {"credentialId": world.credential_id, "cadenceDays": 30, "expiryWarningDays": 7}
    }
    data = await ok(http, SET_POLICY, variables, world.token)
    assert data["setRotationPolicy"] == {
        "credential": {
            "id": world.credential_id,
            "rotationPolicy": {"cadenceDays": 30, "expiryWarningDays": 7},
        },
        "userErrors": [],
    }
    before = await counts(db)
    again = await ok(http, SET_POLICY, variables, world.token)  # unchanged: no new event
    assert again["setRotationPolicy"]["userErrors"] == []
    assert await counts(db) == before
    events = (await ok(http, AUDIT, {"subjectId": world.credential_id}, world.token))[
        "auditEvents"
    ]["nodes"]
    changed = [e for e in events if e["type"] == "CredentialRotationPolicyChanged"]
    assert [(e["actor"]["subject"], e["data"]) for e in changed] == [
        (
            "alice",
            {
                "previous": {"cadenceDays": 90, "expiryWarningDays": 14},
                "rotationPolicy": {"cadenceDays": 30, "expiryWarningDays": 7},
            },
        )
    ]


async def test_forbidden_without_the_scopes_and_nothing_written(
    services: Services, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    db = services.db
    await services.vault.set_secret("fake-hr-key", "newer", tags={"studio-tenant": "acme"})
    nobody = make_token(scopes="connections:read audit:read")
    before = await counts(db)

    body = await gql(
        http,
        "mutation ($id: ID!) { rotateCredential(input: {credentialId: $id}) { rotation { id } } }",
        {"id": world.credential_id},
        token=nobody,
    )
    assert error_codes(body) == ["FORBIDDEN"] and body["data"] == {"rotateCredential": None}

    rotator = make_token(scopes="credentials:rotate credentials:read")  # not credentials:write
    body = await gql(
        http,
        SET_POLICY,
        {"input": {"credentialId": world.credential_id, "cadenceDays": 30, "expiryWarningDays": 7}},
        token=rotator,
    )
    assert error_codes(body) == ["FORBIDDEN"] and body["data"] == {"setRotationPolicy": None}

    body = await gql(http, ALERTS, token=nobody)
    assert error_codes(body) == ["FORBIDDEN"] and body["data"] == {"credentialExpiryAlerts": None}

    body = await gql(
        http,
        "query ($id: ID!) { node(id: $id) { id } }",
        {"id": "rot_01JD8ZZZZZZZZZZZZZZZZZZZZZ"},
        token=nobody,
    )
    assert error_codes(body) == ["FORBIDDEN"]

    assert await counts(db) == before
    viewer = await ok(
        http, "{ viewer { can { rotateCredential setRotationPolicy } } }", {}, rotator
    )
    assert viewer["viewer"]["can"] == {"rotateCredential": True, "setRotationPolicy": False}
