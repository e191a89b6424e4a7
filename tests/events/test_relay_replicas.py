"""Two replicas' relays over one database publish every event exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from studio_integrations.events.bus import EventBus
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import OutboxMessage
from studio_integrations.services import Services
from studio_integrations.workers.outbox_relay import OutboxRelay
from tests.conftest import make_settings
from tests.support.backends import Backend
from tests.support.events import emit


class CountingBus(EventBus):
    def __init__(self, url: str, namespace: str, seen: Counter[str]) -> None:
        super().__init__(url, namespace=namespace)
        self.seen = seen

    async def publish_many(self, items: Sequence[tuple[str, str]]) -> None:
        await asyncio.sleep(0)  # let the other replica run between publications
        for _, payload in items:
            self.seen[payload] += 1
        await super().publish_many(items)


async def test_replicas_share_the_outbox_without_duplicates(
    backend: Backend, tmp_path: Path
) -> None:
    settings = make_settings(backend, tmp_path)
    writer = Services.build(settings)  # emits only; its own relay is not started
    seen: Counter[str] = Counter()
    replicas = []
    for _ in range(2):
        db = Database(settings.database_url)
        bus = CountingBus(settings.broadcast_url, settings.bus_namespace, seen)
        await bus.connect()
        replicas.append((db, bus, OutboxRelay(db, bus, batch_size=7)))
    try:
        await writer.bus.connect()
        for i in range(60):
            await emit(writer, f"tenant-{i % 3}", subject_id=f"prov_{i}")
        await asyncio.sleep(0.5)  # the Redis readers are connected
        totals = await asyncio.gather(*(_drain(relay) for _, _, relay in replicas))
        assert sum(totals) == 60
        assert all(t > 0 for t in totals) or backend.name == "sqlite"  # SQLite serialises writers
        assert len(seen) == 60
        assert set(seen.values()) == {1}
        async with writer.db.session(TenantScope.system_scope()) as s:
            left = await s.execute(select(func.count()).where(OutboxMessage.published_at.is_(None)))
            assert left.scalar_one() == 0
    finally:
        for db, bus, _ in replicas:
            await bus.disconnect()
            await db.dispose()
        await writer.bus.disconnect()
        await writer.db.dispose()


async def _drain(relay: OutboxRelay) -> int:
    total = 0
    while True:
        published = await relay.relay_once()
        total += published
        if published == 0:
            return total


class NoTransactionBus(EventBus):
    """Fails a publication made while the relay's database holds a connection."""

    def __init__(self, url: str, namespace: str, db: Database) -> None:
        super().__init__(url, namespace=namespace)
        self.db = db
        self.held: list[int] = []

    async def publish_many(self, items: Sequence[tuple[str, str]]) -> None:
        self.held.append(self.db.engine.pool.checkedout())  # type: ignore[attr-defined]
        await super().publish_many(items)


async def test_the_relay_holds_no_transaction_while_it_publishes(
    backend: Backend, tmp_path: Path
) -> None:
    settings = make_settings(backend, tmp_path)
    writer = Services.build(settings)
    db = Database(settings.database_url)
    bus = NoTransactionBus(settings.broadcast_url, settings.bus_namespace, db)
    await bus.connect()
    try:
        for i in range(5):
            await emit(writer, "acme", subject_id=f"prov_{i}")
        relay = OutboxRelay(db, bus)
        assert await _drain(relay) == 5
        assert bus.held == [0]  # one publication (the batch), no connection held over it
    finally:
        await bus.disconnect()
        await db.dispose()
        await writer.db.dispose()
