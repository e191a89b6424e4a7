"""Per-subscription ``maxDeliveriesPerSecond``: set, changed and cleared through GraphQL
(bad values are userErrors that change nothing), and honoured by the dispatcher across
replicas: deliveries beyond the rate are deferred, not attempted.

The dispatchers are driven by hand with a clock the test moves, and share one
``MemoryRateLimiter`` whose clock is frozen too, so no test depends on how fast it runs.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from studio_integrations.auth.request_limits import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from studio_integrations.core.enums import DeliveryStatus
from studio_integrations.events.envelope import EventType
from studio_integrations.services import Services
from tests.fakes.receiver import WebhookReceiver
from tests.support.events import emit
from tests.support.graphql import error_codes, gql
from tests.webhooks.conftest import (
    CREATE,
    UPDATE,
    Clock,
    attempts,
    create_subscription,
    deliveries,
    events_of,
    eventually,
    hand_dispatcher,
    ok,
    subscription_row,
    webhook_counts,
)
from tests.webhooks.test_dispatcher import subscribe_and_emit

ENDPOINT = "https://hooks.example.com/studio"
RATE_FIELD = "input.maxDeliveriesPerSecond"


class FrozenSeconds:
    """A monotonic clock for the rate limiter that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_create_update_and_clear_the_rate(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    sub = await create_subscription(http, token, ENDPOINT, maxDeliveriesPerSecond=5)
    assert sub["maxDeliveriesPerSecond"] == 5
    assert (await subscription_row(services, sub["id"])).max_deliveries_per_second == 5
    [created] = await events_of(services, "WebhookSubscriptionCreated")
    assert created.data["maxDeliveriesPerSecond"] == 5
    unlimited = await create_subscription(http, token, ENDPOINT)
    assert unlimited["maxDeliveriesPerSecond"] is None

    data = await ok(http, UPDATE, {"input": {"id": sub["id"], "maxDeliveriesPerSecond": 7}}, token)
    payload = data["updateWebhookSubscription"]
    assert payload["userErrors"] == []
    assert payload["subscription"]["maxDeliveriesPerSecond"] == 7
    [updated] = await events_of(services, "WebhookSubscriptionUpdated")
    assert updated.data["changed"] == ["maxDeliveriesPerSecond"]
    assert updated.data["maxDeliveriesPerSecond"] == 7

    # Absent keeps the rate; null clears it; null again is nothing to change.
    data = await ok(http, UPDATE, {"input": {"id": sub["id"], "description": "ops"}}, token)
    assert data["updateWebhookSubscription"]["subscription"]["maxDeliveriesPerSecond"] == 7
    data = await ok(
        http, UPDATE, {"input": {"id": sub["id"], "maxDeliveriesPerSecond": None}}, token
    )
    assert data["updateWebhookSubscription"]["subscription"]["maxDeliveriesPerSecond"] is None
    assert (await subscription_row(services, sub["id"])).max_deliveries_per_second is None
    data = await ok(
        http, UPDATE, {"input": {"id": sub["id"], "maxDeliveriesPerSecond": None}}, token
    )
    codes = [e["code"] for e in data["updateWebhookSubscription"]["userErrors"]]
    assert codes == ["NOTHING_TO_UPDATE"]
    # The largest rate is accepted.
    data = await ok(
        http, UPDATE, {"input": {"id": sub["id"], "maxDeliveriesPerSecond": 10_000}}, token
    )
    assert data["updateWebhookSubscription"]["subscription"]["maxDeliveriesPerSecond"] == 10_000


async def test_bad_rates_are_user_errors_that_change_nothing(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    sub = await create_subscription(http, token, ENDPOINT, maxDeliveriesPerSecond=3)
    before = await webhook_counts(services)
    for bad in (0, -1, 10_001):
        doc = {"eventType": "*", "endpointUrl": ENDPOINT, "maxDeliveriesPerSecond": bad}
        data = await ok(http, CREATE, {"input": doc}, token)
        payload = data["createWebhookSubscription"]
        assert payload["subscription"] is None, bad
        errors = payload["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == [(RATE_FIELD, "INVALID_RATE")], bad
        assert "10000" in errors[0]["message"]

        change = {"id": sub["id"], "maxDeliveriesPerSecond": bad, "description": "changed"}
        data = await ok(http, UPDATE, {"input": change}, token)
        payload = data["updateWebhookSubscription"]
        assert payload["subscription"] is None, bad
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
            (RATE_FIELD, "INVALID_RATE")
        ], bad
    # Not a whole number, or beyond GraphQL's Int: refused before the resolver runs.
    for bad_value in (1.5, "2", 2**31):
        doc = {"eventType": "*", "endpointUrl": ENDPOINT, "maxDeliveriesPerSecond": bad_value}
        body = await gql(http, CREATE, {"input": doc}, token=token)
        assert body.get("data") is None and error_codes(body), (bad_value, body)
        change = {"id": sub["id"], "maxDeliveriesPerSecond": bad_value}
        body = await gql(http, UPDATE, {"input": change}, token=token)
        assert body.get("data") is None and error_codes(body), (bad_value, body)
    assert await webhook_counts(services) == before
    row = await subscription_row(services, sub["id"])
    assert row.max_deliveries_per_second == 3
    assert row.description is None
    assert row.version == sub["version"]


async def test_two_replicas_share_the_rate_and_defer_the_rest(
    services: Services, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    sub = await subscribe_and_emit(
        services, http, token, receiver.url, events=10, maxDeliveriesPerSecond=2
    )
    clock = Clock()
    seconds = FrozenSeconds()
    limiter = MemoryRateLimiter(clock=seconds)
    # Two replicas, each claiming half of the due deliveries, drawing from one budget.
    first = hand_dispatcher(services, clock, rate_limiter=limiter, batch_size=5)
    second = hand_dispatcher(services, clock, rate_limiter=limiter, batch_size=5)
    order = [r.id for r in await deliveries(services, subscription_id=sub["id"])]
    assert len(order) == 10

    assert await first.dispatch_once() == 2
    assert await second.dispatch_once() == 0  # its five: no token left, deferred
    assert await first.dispatch_once() == 0  # nothing is due: no spinning on deferred ones
    assert await second.dispatch_once() == 0
    assert len(receiver.received) == 2
    rows = {r.id: r for r in await deliveries(services, subscription_id=sub["id"])}
    sent = [i for i in order if rows[i].status is DeliveryStatus.SUCCEEDED]
    assert sent == order[:2]  # in order
    assert {receiver_seen.webhook_id for receiver_seen in receiver.received} == {
        rows[i].message_id for i in sent
    }
    for delivery_id in order[2:]:
        row = rows[delivery_id]
        assert row.status is DeliveryStatus.PENDING
        assert row.attempt_count == 0
        assert row.next_attempt_at is not None and row.next_attempt_at > clock.now
        assert row.lease_until is None
        assert await attempts(services, delivery_id) == []

    # One second later the bucket holds two tokens again: two more, the next two in order.
    seconds.now += 1.0
    clock.advance(1.0)
    assert await second.dispatch_once() == 2
    assert await first.dispatch_once() == 0
    assert len(receiver.received) == 4
    rows = {r.id: r for r in await deliveries(services, subscription_id=sub["id"])}
    sent = [i for i in order if rows[i].status is DeliveryStatus.SUCCEEDED]
    assert sent == order[:4]
    waiting = [rows[i] for i in order[4:]]
    assert {r.status for r in waiting} == {DeliveryStatus.PENDING}
    assert {r.attempt_count for r in waiting} == {0}
    assert all(r.next_attempt_at is not None and r.next_attempt_at > clock.now for r in waiting)
    for row in waiting:
        assert await attempts(services, row.id) == []


async def test_replicas_with_their_own_limiters_share_the_rate_through_redis(
    services: Services, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    """The deployed path: each replica has its own limiter object; with a Redis bus they draw
    from one bucket in Redis (Redis's clock, which a test cannot stop: the bound below allows
    one more token for every second the two passes took, which is normally none)."""
    sub = await subscribe_and_emit(
        services, http, token, receiver.url, events=6, maxDeliveriesPerSecond=1
    )
    settings = services.settings
    own: RateLimiter = services.rate_limiter
    if isinstance(own, RedisRateLimiter):
        other: RateLimiter = RedisRateLimiter(
            settings.broadcast_url, namespace=settings.bus_namespace
        )
    else:
        other = own  # one process: the in-memory limiter is the shared one
    clock = Clock()
    first = hand_dispatcher(services, clock, rate_limiter=own, batch_size=3)
    second = hand_dispatcher(services, clock, rate_limiter=other, batch_size=3)
    started = time.monotonic()
    try:
        sent = await first.dispatch_once() + await second.dispatch_once()
    finally:
        elapsed = time.monotonic() - started
        if other is not own:
            await other.aclose()
    assert 1 <= sent <= 1 + int(elapsed)
    assert len(receiver.received) == sent
    rows = await deliveries(services, subscription_id=sub["id"])
    waiting = [r for r in rows if r.status is DeliveryStatus.PENDING]
    assert len(waiting) == 6 - sent
    for row in waiting:
        assert row.attempt_count == 0
        assert row.next_attempt_at is not None and row.next_attempt_at > clock.now
        assert await attempts(services, row.id) == []


async def test_a_limited_subscription_does_not_hold_back_an_unlimited_one(
    services: Services, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    await services.webhook_dispatcher.stop()
    limited = await create_subscription(
        http, token, receiver.url, eventType="ProviderRegistered", maxDeliveriesPerSecond=1
    )
    free = await create_subscription(http, token, receiver.url, eventType="ProviderRegistered")
    for _ in range(3):
        await emit(services, "acme")

    async def fanned() -> list[Any] | None:
        rows = await deliveries(services)
        return rows if len(rows) >= 6 else None

    await eventually(fanned, what="the fan-out")
    limiter = MemoryRateLimiter(clock=FrozenSeconds())
    dispatcher = hand_dispatcher(services, Clock(), rate_limiter=limiter)
    assert await dispatcher.dispatch_once() == 4  # one of the limited, all three of the other
    by_sub: dict[str, list[DeliveryStatus]] = {}
    for row in await deliveries(services):
        by_sub.setdefault(row.subscription_id or "", []).append(row.status)
    assert sorted(by_sub[limited["id"]]) == sorted(
        [DeliveryStatus.SUCCEEDED, DeliveryStatus.PENDING, DeliveryStatus.PENDING]
    )
    assert by_sub[free["id"]] == [DeliveryStatus.SUCCEEDED] * 3


async def test_a_batch_of_deferred_deliveries_does_not_stall_the_others(
    services: Services, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    """A limited subscription's backlog ahead of other deliveries fills whole claims with
    deferrals; the running dispatcher claims on at once instead of waiting for its poll."""
    limited = await subscribe_and_emit(
        services, http, token, receiver.url, events=6, maxDeliveriesPerSecond=1
    )
    free = await create_subscription(http, token, receiver.url, eventType="CredentialRotated")
    for _ in range(2):
        await emit(services, "acme", type=EventType.CREDENTIAL_ROTATED)

    async def fanned() -> list[Any] | None:
        rows = await deliveries(services, subscription_id=free["id"])
        return rows if len(rows) >= 2 else None

    await eventually(fanned, what="the fan-out")
    limiter = MemoryRateLimiter(clock=FrozenSeconds())
    # The poll is far away: only claiming on reaches the other subscription's deliveries.
    dispatcher = hand_dispatcher(
        services, Clock(), rate_limiter=limiter, batch_size=3, poll_seconds=600
    )
    dispatcher.start()
    try:

        async def free_sent() -> bool:
            rows = await deliveries(services, subscription_id=free["id"])
            return all(r.status is DeliveryStatus.SUCCEEDED for r in rows)

        await eventually(free_sent, what="the unlimited subscription's deliveries")
    finally:
        await dispatcher.stop(grace=5)
    rows = await deliveries(services, subscription_id=limited["id"])
    assert sorted(r.status for r in rows) == sorted(
        [DeliveryStatus.SUCCEEDED] + [DeliveryStatus.PENDING] * 5
    )


async def test_the_dispatcher_draws_from_the_services_shared_limiter(
    services: Services,
) -> None:
    # One limiter per process, the one API requests use: in Redis (shared by every replica)
    # when the bus is Redis.
    assert services.webhook_dispatcher.rate_limiter is services.rate_limiter
    redis_bus = services.settings.broadcast_url.startswith(("redis://", "rediss://"))
    expected = RedisRateLimiter if redis_bus else MemoryRateLimiter
    assert isinstance(services.rate_limiter, expected)
