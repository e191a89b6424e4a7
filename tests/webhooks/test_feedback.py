"""No feedback loops: subscriptions to IntegrationFailureRaised whose endpoints all fail get
one round of deliveries per original failure, however long the system runs (the failures
their own deliveries raise are recorded, but not delivered by webhook)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from studio_integrations.events.envelope import EventType
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationFailure, OutboxMessage
from studio_integrations.services import Services
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.webhooks.conftest import Clock, create_subscription, eventually, hand_dispatcher

ATTEMPTS = 2  # retrySchedule [1]: the first try and one retry


async def _outbox_drained(services: Services) -> bool:
    async with services.db.session(TenantScope.system_scope()) as session:
        stmt = select(func.count()).where(OutboxMessage.published_at.is_(None))
        return int((await session.execute(stmt)).scalar_one()) == 0


async def _failures(services: Services) -> int:
    async with services.db.session(TenantScope.system_scope()) as session:
        return int((await session.execute(select(func.count(IntegrationFailure.id)))).scalar_one())


@pytest.mark.parametrize("subscribers", [2, 3])
async def test_failing_failure_subscribers_do_not_feed_each_other(
    subscribers: int,
    server: LiveServer,
    http: httpx.AsyncClient,
    token: str,
    receiver: WebhookReceiver,
) -> None:
    services = server.services
    await services.webhook_dispatcher.stop()
    receiver.answer(Reply(500, b"down"))
    for i in range(subscribers):
        await create_subscription(
            http,
            token,
            f"{receiver.url}/{i}",
            eventType="IntegrationFailureRaised",
            retrySchedule=[1],
        )
    await emit(services, "acme", type=EventType.INTEGRATION_FAILURE_RAISED)
    clock = Clock()
    dispatcher = hand_dispatcher(services, clock)
    counts = []
    for _ in range(8):  # far more rounds than the retry schedule needs
        services.relay.wake()
        await eventually(lambda: _outbox_drained(services), what="the relay")
        while await dispatcher.dispatch_once():
            pass
        clock.advance(2)
        counts.append(len(receiver.received))
    # One delivery per subscriber, each tried twice, then nothing more: flat.
    assert counts[-1] == subscribers * ATTEMPTS, counts
    assert counts[-4:] == [subscribers * ATTEMPTS] * 4
    # Each final failure is still recorded (and audited), just not delivered by webhook.
    assert await _failures(services) == subscribers
