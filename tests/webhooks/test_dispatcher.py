"""The dispatcher: Standard Webhooks signatures (checked with the `standardwebhooks` package),
retries with the same webhook-id, 410, Retry-After, redirects, the disable window, egress
checks at delivery time, and the egress audit.

The background dispatcher is stopped; each test drives one by hand (``dispatch_once``) with
a clock it moves, so retry delays cost no real time.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from studio_integrations.core.enums import DeliveryStatus, FailureCategory
from studio_integrations.outbound.signing import sign
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationFailure, OutboxMessage
from studio_integrations.services import Services
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.webhooks.conftest import (
    DELIVERIES,
    ROTATE,
    SUBSCRIPTIONS,
    Clock,
    attempts,
    create_subscription,
    deliveries,
    events_of,
    eventually,
    hand_dispatcher,
    ok,
    signing_secret,
    subscription_row,
)


async def subscribe_and_emit(
    services: Services,
    http: httpx.AsyncClient,
    token: str,
    endpoint: str,
    *,
    events: int = 1,
    **over: Any,
) -> dict[str, Any]:
    """A subscription to ProviderRegistered, the background dispatcher stopped, and
    ``events`` events emitted and fanned out into deliveries."""
    await services.webhook_dispatcher.stop()
    sub = await create_subscription(http, token, endpoint, eventType="ProviderRegistered", **over)
    for _ in range(events):
        await emit(services, "acme")

    async def fanned() -> list[Any] | None:
        rows = await deliveries(services, subscription_id=sub["id"])
        return rows if len(rows) >= events else None

    await eventually(fanned, what="the fan-out")
    return sub


def verify(secret: str, seen: Any) -> Any:
    return Webhook(secret).verify(seen.body, seen.headers)


async def test_signatures_verify_with_the_reference_implementation(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    assert await hand_dispatcher(services, clock).dispatch_once() == 1
    [seen] = receiver.received
    secret = await signing_secret(services, sub, sub["signingSecretVersion"])
    body = verify(secret, seen)
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert seen.webhook_id == delivery.message_id == delivery.event_id
    assert seen.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    assert seen.headers["content-type"] == "application/json"
    assert body["type"] == "ProviderRegistered"
    assert body["id"] == delivery.event_id
    assert body["tenantId"] == "acme"
    # Tampered body, or a signature made with another secret: the reference refuses.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(seen.body.replace(b"acme", b"acmf"), seen.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(seen.body, seen.headers)


async def test_a_stale_timestamp_fails_the_reference_verification(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    clock.advance(-600)  # a sender whose clock is 10 minutes behind
    dispatcher = hand_dispatcher(services, clock)
    clock.advance(600)  # …claims at the real time, then signs with a stale one
    claims = await dispatcher.claim()
    clock.advance(-600)
    await dispatcher.deliver(claims[0])
    [seen] = receiver.received
    secret = await signing_secret(services, sub, sub["signingSecretVersion"])
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, seen)


async def test_500_twice_then_200_is_three_attempts_with_one_webhook_id(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(500, b"boom"), Reply(500, b"boom again"), Reply(200, b"ok"))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    dispatcher = hand_dispatcher(services, clock, retry_schedule=(5, 30))
    assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.RETRYING
    assert delivery.next_attempt_at is not None
    wait = (delivery.next_attempt_at - clock.now).total_seconds()
    assert 4.0 <= wait <= 6.0  # 5 s ± 20 %
    assert await dispatcher.dispatch_once() == 0  # not due yet
    clock.advance(6)
    assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    wait = (delivery.next_attempt_at - clock.now).total_seconds()  # type: ignore[operator]
    assert 24.0 <= wait <= 36.0  # 30 s ± 20 %
    clock.advance(36)
    assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert delivery.attempt_count == 3
    rows = await attempts(services, delivery.id)
    assert [a.http_status for a in rows] == [500, 500, 200]
    assert [a.error_category for a in rows] == [
        FailureCategory.SERVER_ERROR,
        FailureCategory.SERVER_ERROR,
        None,
    ]
    assert rows[0].response_excerpt == "boom"
    assert {a.resolved_address for a in rows} == {"127.0.0.1"}
    # The same webhook-id each time, each signed afresh and valid.
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert len({r.headers["webhook-signature"] for r in receiver.received}) == 3
    secret = await signing_secret(services, sub, sub["signingSecretVersion"])
    for seen in receiver.received:
        verify(secret, seen)
    # The log and the egress audit show it.
    data = await ok(http, DELIVERIES, {"filter": {"subscriptionId": sub["id"]}}, token)
    [node] = data["webhookDeliveries"]["nodes"]
    assert node["status"] == "SUCCEEDED"
    assert node["direction"] == "OUTBOUND"
    assert node["signatureStatus"] == "NOT_APPLICABLE"
    assert [a["httpStatus"] for a in node["attempts"]] == [500, 500, 200]
    assert node["attempts"][0]["urlHost"] == "127.0.0.1"
    assert node["payload"]["id"] == node["eventId"]
    data = await ok(http, SUBSCRIPTIONS, {}, token)
    [listed] = data["webhookSubscriptions"]["nodes"]
    audit = listed["egressAudit"]["nodes"]
    assert [a["httpStatus"] for a in audit] == [200, 500, 500]  # newest first
    assert all(a["resolvedAddress"] == "127.0.0.1" for a in audit)
    assert all(a["latencyMs"] is not None for a in audit)
    assert listed["failingSince"] is None  # the success cleared it


async def test_410_disables_the_subscription_with_an_event(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(410))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    assert await hand_dispatcher(services, Clock()).dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.FAILED
    row = await subscription_row(services, sub["id"])
    assert row.active is False
    assert "410" in (row.disabled_reason or "")
    [event] = await events_of(services, "WebhookSubscriptionDisabled")
    assert event.subject_id == sub["id"]
    async with services.db.session(TenantScope.of("acme")) as session:
        failures = list(
            (
                await session.execute(
                    select(IntegrationFailure).where(IntegrationFailure.delivery_id == delivery.id)
                )
            ).scalars()
        )
    assert len(failures) == 1
    assert failures[0].category is FailureCategory.CLIENT_ERROR


async def test_retry_after_is_honoured(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(503, headers={"Retry-After": "120"}), Reply(200))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    dispatcher = hand_dispatcher(services, clock, retry_schedule=(5,))
    await dispatcher.dispatch_once()
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.next_attempt_at is not None
    assert (delivery.next_attempt_at - clock.now).total_seconds() >= 120
    clock.advance(60)
    assert await dispatcher.dispatch_once() == 0
    clock.advance(61)
    assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED


async def test_a_redirect_is_a_failure_and_is_not_followed(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(307, headers={"Location": f"{receiver.base_url}/elsewhere"}))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    await hand_dispatcher(services, Clock(), retry_schedule=(5,)).dispatch_once()
    assert [r.path for r in receiver.received] == ["/hooks"]
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.RETRYING
    [attempt] = await attempts(services, delivery.id)
    assert attempt.http_status == 307
    assert "redirects are not followed" in (attempt.error or "")


async def test_the_schedule_spent_fails_the_delivery_with_an_integration_failure(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(500))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url, retrySchedule=[1])
    clock = Clock()
    dispatcher = hand_dispatcher(services, clock, retry_schedule=(300, 300))
    await dispatcher.dispatch_once()
    clock.advance(2)  # the subscription's own schedule (1 s) applies, not the default
    assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempt_count == 2
    [event] = await events_of(services, "IntegrationFailureRaised")
    assert event.data["deliveryId"] == delivery.id
    assert event.data["category"] == "SERVER_ERROR"


async def test_failing_past_the_disable_window_disables(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(500))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    dispatcher = hand_dispatcher(
        services, clock, retry_schedule=(60, 60, 60), disable_after_seconds=100
    )
    await dispatcher.dispatch_once()
    row = await subscription_row(services, sub["id"])
    assert row.failing_since == clock.now
    assert row.active is True
    clock.advance(80)
    await dispatcher.dispatch_once()
    assert (await subscription_row(services, sub["id"])).active is True
    clock.advance(80)  # 160 s of failures > 100 s
    await dispatcher.dispatch_once()
    row = await subscription_row(services, sub["id"])
    assert row.active is False
    assert "continuously" in (row.disabled_reason or "")
    [event] = await events_of(services, "WebhookSubscriptionDisabled")
    assert event.subject_id == sub["id"]
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.FAILED


async def test_during_rotation_both_secrets_sign(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    rotated = (await ok(http, ROTATE, {"id": sub["id"]}, token))["rotateWebhookSigningSecret"]
    rotated = rotated["subscription"]
    clock = Clock()
    await hand_dispatcher(services, clock).dispatch_once()
    [seen] = receiver.received
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    old = await signing_secret(services, sub, sub["signingSecretVersion"])
    new = await signing_secret(services, rotated, rotated["signingSecretVersion"])
    verify(old, seen)
    verify(new, seen)
    # After 24 h only the new one signs.
    await emit(services, "acme")

    async def second() -> bool:
        return len(await deliveries(services, subscription_id=sub["id"])) == 2

    await eventually(second)
    clock.advance(24 * 3600 + 1)
    assert await hand_dispatcher(services, clock).dispatch_once() == 1
    latest = receiver.received[-1]
    stamp = int(latest.headers["webhook-timestamp"])
    assert latest.headers["webhook-signature"] == sign(new, latest.webhook_id, stamp, latest.body)


async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    """DNS rebinding: the name passed the check when saved; at delivery it resolves to a
    private address, and no request is made."""
    services = server.services
    port = httpx.URL(receiver.base_url).port
    sub = await subscribe_and_emit(
        server.services, http, token, f"http://hooks.rebind.test:{port}/hooks"
    )

    async def rebound(host: str, _port: int) -> list[str]:
        assert host == "hooks.rebind.test"
        return ["10.1.2.3"]

    await hand_dispatcher(services, Clock(), resolver=rebound).dispatch_once()
    assert receiver.received == []
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    [attempt] = await attempts(services, delivery.id)
    assert attempt.error_category is FailureCategory.CONFIGURATION
    assert "10.1.2.3" in (attempt.error or "")
    assert attempt.http_status is None

    # Resolving to the (allowed) loopback address: the request goes to the checked IP and
    # still names the host.
    async def loopback(host: str, _port: int) -> list[str]:
        return ["127.0.0.1"]

    clock = Clock()
    clock.advance(10)
    await hand_dispatcher(services, clock, resolver=loopback).dispatch_once()
    [seen] = receiver.received
    assert seen.headers["host"] == f"hooks.rebind.test:{port}"
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED


async def test_the_response_excerpt_is_capped(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(500, b"x" * 100_000))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    await hand_dispatcher(services, Clock()).dispatch_once()
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    [attempt] = await attempts(services, delivery.id)
    assert attempt.response_excerpt is not None
    assert len(attempt.response_excerpt) == 4096


async def test_an_inactive_subscription_gets_nothing(
    services: Services, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services: Services = services
    await services.webhook_dispatcher.stop()
    sub = await create_subscription(
        http, token, receiver.url, eventType="ProviderRegistered", active=False
    )
    sent = await emit(services, "acme")

    async def published() -> bool:
        async with services.db.session(TenantScope.system_scope()) as session:
            row = (
                await session.execute(
                    select(OutboxMessage).where(OutboxMessage.event_id == sent.id)
                )
            ).scalar_one()
        return row.published_at is not None

    await eventually(published, what="the relay")
    assert await deliveries(services, subscription_id=sub["id"]) == []
