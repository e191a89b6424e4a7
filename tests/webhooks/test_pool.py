"""The dispatcher's pool: attempts recorded before their request goes out, one slow endpoint
does not starve the others, and a stop releases the leases of abandoned sends so another
dispatcher resends them at once (no waiting for the lease to expire)."""

from __future__ import annotations

import asyncio

import httpx

from studio_integrations.core.enums import DeliveryStatus
from studio_integrations.domain.webhooks import IN_FLIGHT
from tests.fakes.receiver import WebhookReceiver
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.webhooks.conftest import (
    Clock,
    attempts,
    create_subscription,
    deliveries,
    eventually,
    hand_dispatcher,
)
from tests.webhooks.test_dispatcher import subscribe_and_emit


async def test_an_attempt_is_on_record_before_its_request_goes_out(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    receiver.hold()
    dying = hand_dispatcher(services, clock)
    task = asyncio.create_task(dying.dispatch_once())
    await receiver.wait_for(1)  # the request is at the receiver…
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    [attempt] = await attempts(services, delivery.id)  # …and already in the audit
    assert delivery.attempt_count == 1
    assert attempt.number == 1
    assert attempt.error == IN_FLIGHT
    assert attempt.url == receiver.url
    task.cancel()  # the replica dies: its send stays in the audit
    await asyncio.gather(task, return_exceptions=True)
    receiver.release()
    clock.advance(61)
    assert await hand_dispatcher(services, clock).dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert delivery.attempt_count == 2
    rows = await attempts(services, delivery.id)
    assert [a.number for a in rows] == [1, 2]
    assert [a.http_status for a in rows] == [None, 200]
    assert rows[0].error == IN_FLIGHT


async def test_a_slow_endpoint_does_not_starve_the_others(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    slow = WebhookReceiver()
    async with slow.running():
        slow.hold()
        await services.webhook_dispatcher.stop()
        slow_sub = await create_subscription(http, token, slow.url, eventType="ProviderRegistered")
        for _ in range(10):
            await emit(services, "acme")
        await eventually(
            lambda: _count(services, slow_sub["id"], 10), what="the slow endpoint's deliveries"
        )
        clock = Clock()
        dispatcher = hand_dispatcher(services, clock, concurrency=4, per_subscription=2)
        dispatcher.start()
        try:
            await slow.wait_for(2)  # the slow endpoint holds its two slots…
            fast_sub = await create_subscription(
                http, token, receiver.url, eventType="CredentialRotated"
            )
            for _ in range(6):
                await emit(services, "acme", type=_rotated())
            await eventually(
                lambda: _count(services, fast_sub["id"], 6), what="the fast endpoint's fan-out"
            )
            # Fanned out (due at the real now) after the clock was made: due by its time too.
            # (The slow sends' leases are for 60 s of this clock: still held.)
            clock.catch_up()
            dispatcher.wake()
            await receiver.wait_for(6)  # …and the other endpoint gets all of its deliveries
            assert len(slow.received) == 2  # never more than its share at once

            async def fast_done() -> bool:
                rows = await deliveries(services, subscription_id=fast_sub["id"])
                return len(rows) == 6 and all(r.status is DeliveryStatus.SUCCEEDED for r in rows)

            await eventually(fast_done, what="the fast endpoint's deliveries recorded")
        finally:
            slow.release()
            await dispatcher.stop(grace=5)


async def test_a_stop_releases_the_leases_of_sends_it_abandons(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url, events=3)
    receiver.hold()
    clock = Clock()
    stopping = hand_dispatcher(services, clock, lease_seconds=60)
    stopping.start()
    await receiver.wait_for(3)  # three sends in flight, answers held
    await stopping.stop(grace=3)
    rows = await deliveries(services, subscription_id=sub["id"])
    assert {r.status for r in rows} == {DeliveryStatus.PENDING}
    assert {r.lease_until for r in rows} == {None}  # released, not left to expire
    for row in rows:
        [attempt] = await attempts(services, row.id)
        assert attempt.error is not None and attempt.error.startswith("abandoned")
    receiver.release()
    # Another replica resends them at once: the clock has not moved past any lease.
    assert await hand_dispatcher(services, clock).dispatch_once() == 3
    rows = await deliveries(services, subscription_id=sub["id"])
    assert {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}
    assert {r.attempt_count for r in rows} == {2}


async def _count(services: object, subscription_id: str, n: int) -> bool:
    rows = await deliveries(services, subscription_id=subscription_id)  # type: ignore[arg-type]
    return len(rows) >= n


def _rotated() -> object:
    from studio_integrations.events.envelope import EventType

    return EventType.CREDENTIAL_ROTATED
