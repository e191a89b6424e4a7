"""The relay fans a batch of events out to webhook deliveries with a fixed number of
statements, however many events the batch holds (bench --shutdown --lag: three statements
per event, one of them scanning the tenant's whole delivery history, kept the relay below
100 events/s once a tenant had 50,000 deliveries)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event

from studio_integrations.core.enums import DeliveryStatus
from studio_integrations.domain.webhooks import WebhookFanout
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.services import Services
from tests.fakes.receiver import WebhookReceiver
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.webhooks.conftest import create_subscription, deliveries


@contextmanager
def all_statements(db: Database) -> Iterator[list[str]]:
    """Every statement the engine runs (workers' included) while the block runs."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)


async def _relay(services: Services, events: int) -> tuple[int, list[EventEnvelope]]:
    """Statements of one relay pass that publishes ``events`` events, and the events."""
    emitted = [await emit(services, "acme", subject_id=f"prov_{i}") for i in range(events)]
    with all_statements(services.db) as seen:
        assert await services.relay.relay_once() == events
    return len(seen), emitted


async def test_a_batch_costs_the_same_statements_whatever_its_size(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    await services.relay.stop()  # driven by hand below
    await services.webhook_dispatcher.stop()
    subs = [
        await create_subscription(http, token, f"{receiver.url}/{i}", eventType=kind)
        for i, kind in enumerate(["ProviderRegistered", "*", "CredentialRotated"])
    ]
    while await services.relay.relay_once():  # the subscriptions' own events
        pass
    small, _ = await _relay(services, 3)
    large, emitted = await _relay(services, 30)
    assert large == small, (small, large)
    # …and the fan-out is still right: each event once to each matching subscription.
    for sub, expected in zip(subs, [33, 33, 0], strict=True):
        rows = await deliveries(
            services, subscription_id=sub["id"], event_type="ProviderRegistered"
        )
        assert len(rows) == expected, sub
        assert {r.status for r in rows} <= {DeliveryStatus.PENDING}
        assert len({r.message_id for r in rows}) == expected
    # The same events fanned out again (a relay whose lease ran out) add nothing.
    before = len(await deliveries(services))
    async with services.db.transaction(TenantScope.system_scope(), background=True) as session:
        await WebhookFanout()(session, emitted)
    assert len(await deliveries(services)) == before
