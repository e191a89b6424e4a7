"""recoverWebhookDeliveries (every FAILED delivery of a window sent again, audited once with
the count) and sendTestWebhook (a signed example marked as a test)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import DeliveryStatus
from studio_integrations.events.catalog import BY_TYPE
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import OutboxMessage
from studio_integrations.services import Services
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.live import LiveServer
from tests.webhooks.conftest import (
    Clock,
    create_subscription,
    deliveries,
    events_of,
    eventually,
    hand_dispatcher,
    ok,
    signing_secret,
)
from tests.webhooks.test_dispatcher import subscribe_and_emit


async def _drained(services: Services) -> bool:
    async with services.db.session(TenantScope.system_scope()) as session:
        stmt = select(func.count()).where(OutboxMessage.published_at.is_(None))
        return int((await session.execute(stmt)).scalar_one()) == 0


RECOVER = """
mutation ($input: RecoverWebhookDeliveriesInput!) {
  recoverWebhookDeliveries(input: $input) {
    subscription { id } recoveredCount userErrors { field code message }
  }
}
"""

SEND_TEST = """
mutation ($input: SendTestWebhookInput!) {
  sendTestWebhook(input: $input) {
    delivery { id status eventType messageId } userErrors { field code message }
  }
}
"""


async def test_recovery_resends_every_failed_delivery_of_the_window_once(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    receiver.answer(Reply(500))
    sub = await subscribe_and_emit(
        server.services, http, token, receiver.url, events=3, retrySchedule=[0]
    )
    dispatcher = hand_dispatcher(services, Clock())
    while await dispatcher.dispatch_once():
        pass
    failed = await deliveries(services, subscription_id=sub["id"])
    assert {d.status for d in failed} == {DeliveryStatus.FAILED}
    receiver.answer(Reply(200))
    since = (utcnow() - timedelta(hours=1)).isoformat()
    # A window before the outage recovers nothing (and is still audited).
    earlier = {"subscriptionId": sub["id"], "since": since, "until": since.replace("+", "-")}
    data = await ok(http, RECOVER, {"input": earlier}, token)
    assert data["recoverWebhookDeliveries"]["userErrors"][0]["code"] == "INVALID_WINDOW"
    data = await ok(http, RECOVER, {"input": {"subscriptionId": sub["id"], "since": since}}, token)
    payload = data["recoverWebhookDeliveries"]
    assert payload["userErrors"] == []
    assert payload["recoveredCount"] == 3
    [event] = await events_of(services, "WebhookDeliveryReplayed")
    assert event.subject_id == sub["id"]
    assert event.data["recovered"] == 3
    before = len(receiver.received)
    dispatcher = hand_dispatcher(services, Clock())  # a clock past the replays' due time
    while await dispatcher.dispatch_once():
        pass
    rows = await deliveries(services, subscription_id=sub["id"])
    replays = [r for r in rows if r.replay_of_id is not None]
    assert len(replays) == 3
    assert {r.status for r in replays} == {DeliveryStatus.SUCCEEDED}
    assert {r.replay_of_id for r in replays} == {d.id for d in failed}
    resent = receiver.received[before:]
    assert sorted(r.webhook_id for r in resent) == sorted(d.message_id for d in failed)


async def test_a_test_send_is_a_signed_example_marked_as_a_test(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    await services.webhook_dispatcher.stop()
    sub = await create_subscription(http, token, receiver.url, eventType="CredentialRotated")
    everything = await create_subscription(http, token, f"{receiver.url}/all", eventType="*")
    refused = await ok(
        http, SEND_TEST, {"input": {"subscriptionId": sub["id"], "eventType": "*"}}, token
    )
    assert refused["sendTestWebhook"]["userErrors"][0]["code"] == "UNKNOWN_EVENT_TYPE"
    data = await ok(
        http,
        SEND_TEST,
        {"input": {"subscriptionId": sub["id"], "eventType": "CredentialRotated"}},
        token,
    )
    payload = data["sendTestWebhook"]
    assert payload["userErrors"] == []
    assert payload["delivery"]["status"] == "PENDING"
    services.relay.wake()
    await eventually(lambda: _drained(services), what="the relay")
    dispatcher = hand_dispatcher(services, Clock())
    while await dispatcher.dispatch_once():
        pass
    [seen] = [r for r in receiver.received if r.path == "/hooks"]
    secret = await signing_secret(services, sub, sub["signingSecretVersion"])
    body = Webhook(secret).verify(seen.body, seen.headers)
    assert body["test"] is True
    assert body["type"] == "CredentialRotated"
    assert body["data"] == BY_TYPE["CredentialRotated"].example
    assert seen.webhook_id == payload["delivery"]["messageId"]
    [event] = await events_of(services, "WebhookTestSent")
    assert event.subject_id == payload["delivery"]["id"]
    # The audit record of a test send is not itself delivered (the '*' subscription).
    fanned = await deliveries(services, subscription_id=everything["id"])
    assert "WebhookTestSent" not in {d.event_type for d in fanned}
    assert fanned  # …though the '*' subscription does get the other events
    assert json.loads(seen.body)["id"] == payload["delivery"]["messageId"]
