"""Transactional outbox and relay: events commit with their change, publish after commit,
and a bus outage delays them without losing any."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from studio_integrations.app import create_app
from studio_integrations.core.context import ActionContext
from studio_integrations.events.bus import BusUnavailable, EventBus
from studio_integrations.events.envelope import EventEnvelope, EventType
from studio_integrations.events.outbox import STRICT_EVENTS_KEY, emit_event
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import AuditEvent, Credential, OutboxMessage
from studio_integrations.services import Services
from studio_integrations.workers.outbox_relay import OutboxRelay
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import REDIS_URL, Backend
from tests.support.events import emit
from tests.support.gqlws import subscribe
from tests.support.live import serve
from tests.support.redis_server import private_redis


async def _counts(services: Services) -> tuple[int, int]:
    async with services.db.session(TenantScope.system_scope()) as s:
        audit = (await s.execute(select(func.count()).select_from(AuditEvent))).scalar_one()
        outbox = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    return audit, outbox


async def _unpublished(services: Services) -> list[OutboxMessage]:
    async with services.db.session(TenantScope.system_scope()) as s:
        return list(
            (
                await s.execute(select(OutboxMessage).where(OutboxMessage.published_at.is_(None)))
            ).scalars()
        )


async def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_event_and_change_roll_back_together(services: Services) -> None:
    from studio_integrations.core.enums import AuthMode, RotationStrategy

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with services.db.transaction(TenantScope.of("acme")) as s:
            s.add(
                Credential(
                    key_vault_ref="local://vault/secrets/x",
                    auth_mode=AuthMode.API_KEY,
                    current_version="1",
                    rotation_strategy=RotationStrategy.EXTERNAL,
                )
            )
            s.info[STRICT_EVENTS_KEY] = False  # plumbing: no data, not the documented shape
            emit_event(
                s,
                ActionContext.system("acme"),
                type=EventType.CREDENTIAL_REGISTERED,
                subject_type="Credential",
                subject_id="cred_x",
            )
            raise Boom
    assert await _counts(services) == (0, 0)
    async with services.db.session(TenantScope.of("acme")) as s:
        assert (await s.execute(select(func.count()).select_from(Credential))).scalar_one() == 0


async def test_committed_events_are_published_to_their_tenant_channel_in_order(
    services: Services,
) -> None:
    async with services.bus.subscribe("acme") as acme, services.bus.subscribe("globex") as globex:
        await asyncio.sleep(0.05)
        sent = [await emit(services, "acme", subject_id=f"prov_{i}") for i in range(5)]
        received: list[EventEnvelope] = [await asyncio.wait_for(anext(acme), 10) for _ in sent]
        assert [e.id for e in received] == [e.id for e in sent]
        # The envelope survives the bus byte for byte, with its commit-order sequence.
        assert replace(received[0], sequence=None) == sent[0]
        sequences = [e.sequence for e in received]
        assert all(isinstance(n, int) for n in sequences)
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(globex), 0.3)
    await _until(lambda: _no_unpublished(services))


async def _no_unpublished(services: Services) -> bool:
    return not await _unpublished(services)


async def test_a_commit_wakes_the_relay_without_waiting_for_its_poll(
    backend: Backend, tmp_path: Path
) -> None:
    svc = Services.build(make_settings(backend, tmp_path, outbox_poll_seconds=30))
    await svc.start()
    try:
        await asyncio.sleep(0.2)  # the relay is now asleep for 30 s
        async with svc.bus.subscribe("acme") as events:
            await asyncio.sleep(0.05)
            sent = await emit(svc, "acme")
            got = await asyncio.wait_for(anext(events), 5)
        assert got.id == sent.id
    finally:
        await svc.stop()


async def test_an_api_only_replica_wakes_the_relays_of_the_others(
    backend: Backend, tmp_path: Path
) -> None:
    """A replica without a relay (STUDIO_WORKERS empty) used to leave its events to the other
    replicas' polls (the relay of the committing process is the one a commit wakes): up to a
    poll interval of lag on top of the relay's own (bench --shutdown --lag --via emit: p99
    1.7 s at 100 events/s). Its commits now wake the relays everywhere, through the bus."""
    shared = Backend(backend.name, backend.database_url, REDIS_URL)
    settings = make_settings(shared, tmp_path, outbox_poll_seconds=3600)
    api = Services.build(settings.model_copy(update={"workers": frozenset()}))
    worker = Services.build(settings.model_copy(update={"workers": frozenset({"relay"})}))
    await worker.start()
    await api.start()
    try:
        await asyncio.sleep(0.3)  # the relay has made its first pass: asleep for an hour
        async with worker.bus.subscribe("acme") as events:
            await _until_true(lambda: worker.bus.connected)
            sent = await emit(api, "acme")
            got = await asyncio.wait_for(anext(events), 30)  # a hang guard, not a measure
        assert got.id == sent.id
    finally:
        await api.stop()
        await worker.stop()


async def test_redis_outage_delays_events_and_loses_none(
    backend: Backend, tmp_path: Path, make_token: TokenFactory
) -> None:
    """Redis stops; an event is emitted; the API keeps serving; Redis returns; the event is
    published and reaches a subscriber that was connected all along."""
    with private_redis(tmp_path) as redis:
        settings = make_settings(Backend(backend.name, backend.database_url, redis.url), tmp_path)
        async with (
            serve(create_app(settings)) as live,
            httpx.AsyncClient(base_url=live.url) as http,
        ):
            services = live.services
            async with subscribe(
                live.ws_url,
                make_token(),
                "subscription { auditEvents { id } }",
                live=services.live_subscribers,
                tenant_id="acme",
            ) as sub:
                redis.stop()
                sent = await emit(services, "acme")
                await _until(lambda: _attempted(services))
                viewer = await http.post(
                    "/graphql",
                    json={"query": "{ viewer { tenantId } }"},
                    headers={"Authorization": f"Bearer {make_token()}"},
                )
                assert (
                    viewer.status_code == 200
                    and viewer.json()["data"]["viewer"]["tenantId"] == "acme"
                )
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["checks"]["bus"].startswith(
                    "unavailable"
                )
                assert [m.event_id for m in await _unpublished(services)] == [sent.id]

                redis.start()
                got = await sub.next(timeout=30)
                assert got["auditEvents"]["id"] == sent.id
                await _until(lambda: _no_unpublished(services))
                assert (await http.get("/readyz")).status_code == 200


async def _attempted(services: Services) -> bool:
    rows = await _unpublished(services)
    return bool(rows)  # the event is committed and still waiting for the bus


async def test_the_bus_coming_back_wakes_the_relay(backend: Backend, tmp_path: Path) -> None:
    """A relay asleep (poll and back-off of an hour) publishes what waited as soon as the bus
    has reconnected: nothing is left to wait for once Redis answers."""
    with private_redis(tmp_path) as redis:
        settings = make_settings(Backend(backend.name, backend.database_url, redis.url), tmp_path)
        writer = Services.build(settings)  # emits only (its commits cannot wake this relay)
        db = Database(settings.database_url)
        bus = EventBus(settings.broadcast_url, namespace=settings.bus_namespace)
        await bus.connect()
        relay = OutboxRelay(db, bus, poll_seconds=3600, max_backoff=3600)
        try:
            async with bus.subscribe("acme") as events:
                await _until_true(lambda: bus.connected)
                relay.start()
                redis.stop()
                await _until_true(lambda: not bus.connected)
                sent = await emit(writer, "acme")
                redis.start()
                got = await asyncio.wait_for(anext(events), 60)
                assert got.id == sent.id
        finally:
            await relay.stop()
            await bus.disconnect()
            await db.dispose()
            await writer.db.dispose()


async def _until_true(predicate: Any) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


class _DroppingBus:
    """A bus that is connected when the relay starts a batch and gone by the time it would
    publish it (Redis restarting while the claim waited on the database)."""

    def __init__(self) -> None:
        self.checks = 0
        self.published: list[str] = []

    @property
    def connected(self) -> bool:
        self.checks += 1
        return self.checks == 1

    async def publish_many(self, items: list[tuple[str, str]]) -> None:
        self.published.extend(message for _, message in items)


@pytest.mark.workers
async def test_the_relay_does_not_publish_once_the_bus_has_dropped(services: Services) -> None:
    """Seen under load: the bus dropped while the claim waited on SQLite's lock; the relay
    published on a fresh connection before this process's subscriptions were back, and the
    event reached none of them. It now checks again before publishing and keeps the row."""
    sent = await emit(services, "acme")
    bus = _DroppingBus()
    relay = OutboxRelay(services.db, bus)  # type: ignore[arg-type]
    with pytest.raises(BusUnavailable):
        await relay.relay_once()
    assert bus.published == []
    async with services.db.session(TenantScope.system_scope()) as session:
        row = (
            await session.execute(select(OutboxMessage).where(OutboxMessage.event_id == sent.id))
        ).scalar_one()
    assert row.published_at is None and row.lease_until is None and row.attempts == 1


class _SlowBus:
    """A connected bus whose publish waits until the test lets it through."""

    connected = True

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.go = asyncio.Event()
        self.published: list[str] = []

    def on_reconnect(self, listener: Any) -> None:
        pass

    async def publish_many(self, items: list[tuple[str, str]]) -> None:
        self.entered.set()
        await self.go.wait()
        self.published.extend(message for _, message in items)


@pytest.mark.workers
async def test_stopping_the_relay_lets_the_batch_in_hand_finish(services: Services) -> None:
    """A stop used to cancel the relay mid-batch (on SQLite, inside a statement waiting on the
    write lock, which left a connection its clean-up could not use, and a task that never
    finished). Now it stops after the batch: published and recorded."""
    sent = await emit(services, "acme")
    bus = _SlowBus()
    relay = OutboxRelay(services.db, bus, poll_seconds=3600)  # type: ignore[arg-type]
    relay.start()
    await asyncio.wait_for(bus.entered.wait(), 30)  # a hang guard, not a measure
    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the batch instead of cancelling it
    bus.go.set()
    await asyncio.wait_for(stopping, 30)
    assert len(bus.published) == 1
    async with services.db.session(TenantScope.system_scope()) as session:
        row = (
            await session.execute(select(OutboxMessage).where(OutboxMessage.event_id == sent.id))
        ).scalar_one()
    assert row.published_at is not None


class _BatchCountingBus(EventBus):
    """The real bus, counting what each publication to it carried."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(url, namespace=namespace)
        self.batches: list[int] = []

    async def publish_many(self, items: Any) -> None:
        self.batches.append(len(items))
        await super().publish_many(items)


async def test_the_relay_publishes_a_batch_in_one_round_trip(
    backend: Backend, tmp_path: Path
) -> None:
    """One round trip to the bus per event kept a batch of 100 seconds long while the process
    was busy serving requests (every await waits for the loop): event -> delivery lag of 11 s
    at 86 mutations/s (bench --shutdown --lag). The batch now goes in one, in order."""
    settings = make_settings(backend, tmp_path)
    writer = Services.build(settings)  # emits only; its own relay is not started
    db = Database(settings.database_url)
    bus = _BatchCountingBus(settings.broadcast_url, settings.bus_namespace)
    await bus.connect()
    try:
        sent = [await emit(writer, "acme", subject_id=f"prov_{i}") for i in range(30)]
        async with bus.subscribe("acme") as events:
            await _until_true(lambda: bus.connected)
            relay = OutboxRelay(db, bus)
            assert await relay.relay_once() == 30
            got = [(await asyncio.wait_for(anext(events), 30)).id for _ in range(30)]
        assert got == [e.id for e in sent]
        assert bus.batches == [30]
    finally:
        await bus.disconnect()
        await db.dispose()
        await writer.db.dispose()
