"""The delivery log: replay (same webhook-id, signed afresh, audited), the live
webhookDeliveryUpdated subscription, and a constant number of SQL statements per page."""

from __future__ import annotations

import json
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import DeliveryDirection, DeliveryStatus
from studio_integrations.core.ids import new_id
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import (
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.gqlws import subscribe
from tests.support.graphql import error_codes, gql
from tests.support.live import LiveServer
from tests.webhooks.conftest import (
    DELIVERIES,
    REPLAY,
    UPDATE,
    Clock,
    deliveries,
    events_of,
    hand_dispatcher,
    ok,
    signing_secret,
    webhook_counts,
)
from tests.webhooks.test_dispatcher import subscribe_and_emit

UPDATED = """
subscription ($direction: DeliveryDirection, $subscriptionId: ID) {
  webhookDeliveryUpdated(direction: $direction, subscriptionId: $subscriptionId) {
    id status direction subscriptionId messageId attemptCount attempts { number httpStatus }
  }
}
"""


async def test_replay_resends_the_preserved_payload_with_the_same_webhook_id(
    server: LiveServer,
    http: httpx.AsyncClient,
    token: str,
    make_token: TokenFactory,
    receiver: WebhookReceiver,
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    await hand_dispatcher(services, clock).dispatch_once()
    [original] = await deliveries(services, subscription_id=sub["id"])
    assert original.status is DeliveryStatus.SUCCEEDED

    # Without webhooks:replay: refused whole.
    before = await webhook_counts(services)
    body = await gql(http, REPLAY, {"id": original.id}, token=make_token(scopes="webhooks:read"))
    assert error_codes(body) == ["FORBIDDEN"]
    assert await webhook_counts(services) == before

    data = await ok(http, REPLAY, {"id": original.id}, token)
    payload = data["replayWebhookDelivery"]
    assert payload["userErrors"] == []
    replay = payload["delivery"]
    assert replay["status"] == "PENDING"
    assert replay["replayOfId"] == original.id
    assert replay["replayOf"] == {"id": original.id, "messageId": original.message_id}
    assert replay["messageId"] == original.message_id
    [event] = await events_of(services, "WebhookDeliveryReplayed")
    assert event.subject_id == replay["id"]
    assert event.data["replayOf"] == original.id
    assert event.actor_subject == "alice"

    clock.advance(2)
    clock.catch_up()  # the replay is due at the real now of its making
    assert await hand_dispatcher(services, clock).dispatch_once() == 1
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == original.message_id
    assert first.body == second.body  # the preserved payload
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    secret = await signing_secret(services, sub, sub["signingSecretVersion"])
    Webhook(secret).verify(second.body, second.headers)
    rows = await deliveries(services, subscription_id=sub["id"])
    assert {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}

    # Unknown id, an inbound delivery, an inactive subscription: userErrors, nothing written.
    inbound_id = await _insert_inbound(server.services)
    data = await ok(http, UPDATE, {"input": {"id": sub["id"], "active": False}}, token)
    assert data["updateWebhookSubscription"]["userErrors"] == []
    before = await webhook_counts(services)
    for delivery_id, code in [
        ("whdel_01JD8ZZZZZZZZZZZZZZZZZZZZZ", "NOT_FOUND"),
        ("not-an-id", "NOT_FOUND"),
        (inbound_id, "NOT_REPLAYABLE"),
        (original.id, "SUBSCRIPTION_INACTIVE"),
    ]:
        data = await ok(http, REPLAY, {"id": delivery_id}, token)
        errors = data["replayWebhookDelivery"]["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == [("input.deliveryId", code)]
    assert await webhook_counts(services) == before
    # Another tenant cannot replay acme's delivery.
    data = await ok(http, REPLAY, {"id": original.id}, make_token(tenant="globex"))
    assert data["replayWebhookDelivery"]["userErrors"][0]["code"] == "NOT_FOUND"


async def _insert_inbound(services: Services) -> str:
    delivery_id = new_id("WebhookDelivery")
    async with services.db.transaction(TenantScope.of("acme")) as session:
        session.add(
            WebhookDelivery(
                id=delivery_id,
                tenant_id="acme",
                direction=DeliveryDirection.INBOUND,
                event_type="x",
                message_id="m",
                status=DeliveryStatus.SUCCEEDED,
                payload="{}",
                headers={},
            )
        )
    return delivery_id


async def test_the_subscription_pushes_each_status_change(
    server: LiveServer,
    http: httpx.AsyncClient,
    token: str,
    make_token: TokenFactory,
    receiver: WebhookReceiver,
) -> None:
    services = server.services
    receiver.answer(Reply(500), Reply(200))
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    feed_live = services.feed_subscribers
    clock = Clock()
    async with (
        subscribe(
            server.ws_url,
            token,
            UPDATED,
            {"direction": "OUTBOUND", "subscriptionId": sub["id"]},
            live=feed_live,
            tenant_id="acme",
        ) as mine,
        subscribe(
            server.ws_url,
            token,
            UPDATED,
            {"direction": "INBOUND"},
            live=feed_live,
            tenant_id="acme",
        ) as inbound_only,
        subscribe(
            server.ws_url, make_token(tenant="globex"), UPDATED, live=feed_live, tenant_id="globex"
        ) as globex,
    ):
        dispatcher = hand_dispatcher(services, clock, retry_schedule=(5,))
        await dispatcher.dispatch_once()
        first = (await mine.next())["webhookDeliveryUpdated"]
        assert first["status"] == "RETRYING"
        assert first["subscriptionId"] == sub["id"]
        assert [a["httpStatus"] for a in first["attempts"]] == [500]
        clock.advance(7)
        await dispatcher.dispatch_once()
        second = (await mine.next())["webhookDeliveryUpdated"]
        assert second["status"] == "SUCCEEDED"
        assert second["id"] == first["id"]
        assert [a["httpStatus"] for a in second["attempts"]] == [500, 200]
        assert await inbound_only.nothing_within(0.2)
        assert await globex.nothing_within(0.2)


async def test_listing_100_deliveries_with_attempts_costs_constant_statements(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    await services.webhook_dispatcher.stop()
    async with services.db.transaction(TenantScope.of("acme")) as session:
        sub = WebhookSubscription(
            tenant_id="acme",
            event_type="*",
            endpoint_url="https://hooks.example.com/x",
            signing_secret_ref="local://vault/secrets/x",
            signing_secret_version="v1",
            active=False,
        )
        session.add(sub)
        await session.flush()
        previous: str | None = None
        for i in range(120):
            delivery = WebhookDelivery(
                tenant_id="acme",
                direction=DeliveryDirection.OUTBOUND,
                subscription_id=sub.id,
                event_type="ProviderRegistered",
                event_id=new_id("AuditEvent"),
                message_id=f"msg_{i}",
                status=DeliveryStatus.FAILED,
                payload=json.dumps({"n": i}),
                headers={},
                attempt_count=2,
                replay_of_id=previous if i % 3 == 0 else None,
            )
            session.add(delivery)
            await session.flush()
            previous = delivery.id
            for n in (1, 2):
                session.add(
                    WebhookDeliveryAttempt(
                        tenant_id="acme",
                        delivery_id=delivery.id,
                        subscription_id=sub.id,
                        number=n,
                        attempted_at=utcnow(),
                        http_status=500,
                        latency_ms=1.0,
                    )
                )
    query = """
    query ($first: Int!) {
      webhookDeliveries(first: $first) {
        nodes { id status payload attempts { number httpStatus }
                replayOf { id messageId } subscription { id endpointUrl } }
      }
    }
    """

    async def cost(first: int) -> tuple[int, Any]:
        with services.db.count_statements() as counter:
            data = await ok(http, query, {"first": first}, token)
        return counter.count, data

    small, _ = await cost(10)
    large, data = await cost(100)
    nodes = data["webhookDeliveries"]["nodes"]
    assert len(nodes) == 100
    assert all(len(n["attempts"]) == 2 for n in nodes)
    assert any(n["replayOf"] is not None for n in nodes)
    assert nodes[0]["payload"] == {"n": 119}  # newest first
    assert large == small
    assert large <= 5
    # The filter and cursor paging work together.
    data = await ok(
        http,
        DELIVERIES,
        {"filter": {"status": "FAILED", "eventType": "ProviderRegistered"}, "first": 50},
        token,
    )
    page = data["webhookDeliveries"]
    assert len(page["nodes"]) == 50
    assert page["pageInfo"]["hasNextPage"] is True
    data = await ok(
        http,
        DELIVERIES,
        {"filter": {"status": "FAILED"}, "first": 100, "after": page["pageInfo"]["endCursor"]},
        token,
    )
    assert len(data["webhookDeliveries"]["nodes"]) == 70
