"""Subscriptions: create (generated or given signing secret), update, rotate, bad input."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import httpx

from studio_integrations.core.clock import utcnow
from studio_integrations.services import Services
from studio_integrations.vault.base import parse_secret_ref
from tests.conftest import TokenFactory
from tests.support.graphql import error_codes, gql
from tests.webhooks.conftest import (
    CREATE,
    ROTATE,
    SUBSCRIPTIONS,
    UPDATE,
    create_subscription,
    events_of,
    ok,
    signing_secret,
    webhook_counts,
)

ENDPOINT = "https://hooks.example.com/studio?token=abc"


async def test_create_generates_a_whsec_secret_straight_into_the_vault(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    sub = await create_subscription(
        http, token, ENDPOINT, eventType="CredentialRotated", description="ops"
    )
    assert sub["eventType"] == "CredentialRotated"
    assert sub["active"] is True
    assert sub["retrySchedule"] is None
    assert sub["effectiveRetrySchedule"] == list(services.settings.webhook_retry_schedule)
    ref = parse_secret_ref(sub["signingSecretRef"])
    assert ref.vault_url == "local://vault"
    assert ref.version is None
    secret = await services.vault.get_secret(ref.name, sub["signingSecretVersion"])
    assert secret.value.startswith("whsec_")
    assert len(base64.b64decode(secret.value.removeprefix("whsec_"))) >= 24
    assert secret.properties.tags == {"studio-tenant": "acme"}
    [created] = await events_of(services, "WebhookSubscriptionCreated")
    assert created.subject_id == sub["id"]
    assert created.data["eventType"] == "CredentialRotated"
    assert secret.value not in str(created.data)
    # Listed, by filter.
    data = await ok(http, SUBSCRIPTIONS, {"filter": {"eventType": "CredentialRotated"}}, token)
    assert [n["id"] for n in data["webhookSubscriptions"]["nodes"]] == [sub["id"]]
    data = await ok(http, SUBSCRIPTIONS, {"filter": {"active": False}}, token)
    assert data["webhookSubscriptions"]["nodes"] == []


async def test_a_given_signing_secret_must_be_the_tenants_own(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    vault = services.vault
    await vault.set_secret("acme-hook", "whsec_" + "A" * 40, tags={"studio-tenant": "acme"})
    await vault.set_secret("globex-hook", "whsec_" + "B" * 40, tags={"studio-tenant": "globex"})
    own = await create_subscription(
        http, token, ENDPOINT, signingSecretRef="local://vault/secrets/acme-hook"
    )
    assert own["signingSecretRef"] == "local://vault/secrets/acme-hook"
    before = await webhook_counts(services)
    data = await ok(
        http,
        CREATE,
        {
            "input": {
                "eventType": "*",
                "endpointUrl": ENDPOINT,
                "signingSecretRef": "local://vault/secrets/globex-hook",
            }
        },
        token,
    )
    payload = data["createWebhookSubscription"]
    assert payload["subscription"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["SECRET_NOT_FOUND"]
    assert await webhook_counts(services) == before


async def test_bad_input_writes_nothing_and_names_every_field(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    before = await webhook_counts(services)
    cases = [
        ({"eventType": "NoSuchEvent"}, {("input.eventType", "UNKNOWN_EVENT_TYPE")}),
        ({"eventType": ""}, {("input.eventType", "REQUIRED")}),
        ({"endpointUrl": "ftp://hooks.example.com/x"}, {("input.endpointUrl", "EGRESS_REFUSED")}),
        (
            {"endpointUrl": "https://169.254.169.254/latest/meta-data"},
            {("input.endpointUrl", "EGRESS_REFUSED")},
        ),
        ({"retrySchedule": []}, {("input.retrySchedule", "EMPTY")}),
        ({"retrySchedule": [5, -1]}, {("input.retrySchedule", "OUT_OF_RANGE")}),
        (
            {"signingSecretRef": "not a reference"},
            {("input.signingSecretRef", "INVALID_SECRET_REF")},
        ),
        (
            {"eventType": "Nope", "endpointUrl": "http://[::1", "description": "x" * 1001},
            {
                ("input.eventType", "UNKNOWN_EVENT_TYPE"),
                ("input.endpointUrl", "EGRESS_REFUSED"),
                ("input.description", "TOO_LONG"),
            },
        ),
    ]
    for over, expected in cases:
        doc = {"eventType": "*", "endpointUrl": ENDPOINT, **over}
        data = await ok(http, CREATE, {"input": doc}, token)
        payload = data["createWebhookSubscription"]
        assert payload["subscription"] is None, over
        got = {(e["field"], e["code"]) for e in payload["userErrors"]}
        assert got == expected, (over, payload["userErrors"])
        assert all(e["message"] for e in payload["userErrors"])
    # (The counts include the vault's versions: no secret was generated either.)
    assert await webhook_counts(services) == before


async def test_update_and_toggle(services: Services, http: httpx.AsyncClient, token: str) -> None:
    sub = await create_subscription(http, token, ENDPOINT)
    data = await ok(
        http,
        UPDATE,
        {
            "input": {
                "id": sub["id"],
                "endpointUrl": "https://other.example.com/hook",
                "eventType": "IntegrationFailureRaised",
                "retrySchedule": [1, 2, 3],
                "active": False,
                "version": sub["version"],
            }
        },
        token,
    )
    updated = data["updateWebhookSubscription"]
    assert updated["userErrors"] == []
    got = updated["subscription"]
    assert got["endpointUrl"] == "https://other.example.com/hook"
    assert got["eventType"] == "IntegrationFailureRaised"
    assert got["retrySchedule"] == [1, 2, 3]
    assert got["effectiveRetrySchedule"] == [1, 2, 3]
    assert got["active"] is False
    [event] = await events_of(services, "WebhookSubscriptionUpdated")
    assert event.data["changed"] == ["active", "endpointUrl", "eventType", "retrySchedule"]
    # A stale version, an unknown id, nothing to change: userErrors, nothing written.
    before = await webhook_counts(services)
    for doc, code in [
        ({"id": sub["id"], "active": True, "version": sub["version"]}, "STALE_VERSION"),
        ({"id": "whsub_01JD8ZZZZZZZZZZZZZZZZZZZZZ", "active": True}, "NOT_FOUND"),
        ({"id": sub["id"], "active": False}, "NOTHING_TO_UPDATE"),
        ({"id": sub["id"], "endpointUrl": "ftp://example.com/x"}, "EGRESS_REFUSED"),
    ]:
        data = await ok(http, UPDATE, {"input": doc}, token)
        assert [e["code"] for e in data["updateWebhookSubscription"]["userErrors"]] == [code]
    assert await webhook_counts(services) == before
    # Clearing the override falls back to the server's schedule.
    data = await ok(http, UPDATE, {"input": {"id": sub["id"], "retrySchedule": None}}, token)
    assert data["updateWebhookSubscription"]["subscription"]["retrySchedule"] is None


async def test_rotation_keeps_the_old_secret_for_24_hours(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    sub = await create_subscription(http, token, ENDPOINT)
    old_value = await signing_secret(services, sub, sub["signingSecretVersion"])
    data = await ok(http, ROTATE, {"id": sub["id"]}, token)
    rotated = data["rotateWebhookSigningSecret"]["subscription"]
    assert rotated["previousSigningSecretVersion"] == sub["signingSecretVersion"]
    assert rotated["signingSecretVersion"] != sub["signingSecretVersion"]
    assert rotated["signingSecretRef"] == sub["signingSecretRef"]
    new_value = await signing_secret(services, rotated, rotated["signingSecretVersion"])
    assert new_value.startswith("whsec_")
    assert new_value != old_value
    until = rotated["previousSecretValidUntil"]
    left = datetime.fromisoformat(until) - utcnow()
    assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)
    [event] = await events_of(services, "WebhookSigningSecretRotated")
    assert event.data["newVersion"] == rotated["signingSecretVersion"]
    assert old_value not in str(event.data) and new_value not in str(event.data)


async def test_scopes_guard_every_webhook_mutation(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    reader = make_token(scopes="webhooks:read")
    before = await webhook_counts(services)
    body = await gql(
        http, CREATE, {"input": {"eventType": "*", "endpointUrl": ENDPOINT}}, token=reader
    )
    assert error_codes(body) == ["FORBIDDEN"]
    assert await webhook_counts(services) == before
    nobody = make_token(scopes="connections:read")
    body = await gql(http, SUBSCRIPTIONS, {}, token=nobody)
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"]["webhookSubscriptions"] is None


async def test_another_tenant_cannot_see_or_touch_a_subscription(
    services: Services, http: httpx.AsyncClient, token: str, make_token: TokenFactory
) -> None:
    sub = await create_subscription(http, token, ENDPOINT)
    globex = make_token(tenant="globex")
    data = await ok(http, SUBSCRIPTIONS, {}, globex)
    assert data["webhookSubscriptions"]["nodes"] == []
    data = await ok(http, UPDATE, {"input": {"id": sub["id"], "active": False}}, globex)
    assert [e["code"] for e in data["updateWebhookSubscription"]["userErrors"]] == ["NOT_FOUND"]
    data = await ok(http, ROTATE, {"id": sub["id"]}, globex)
    assert [e["code"] for e in data["rotateWebhookSigningSecret"]["userErrors"]] == ["NOT_FOUND"]
