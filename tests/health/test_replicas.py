"""Two probers (two replicas: two engines over one database) share the work: each connection
is probed once per interval in total, and a dead replica's claim is taken over."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from studio_integrations.core.clock import utcnow
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.health import HealthStateRepository
from studio_integrations.services import Services
from studio_integrations.workers.health_prober import HealthProber
from tests.health.conftest import (
    PROBE_INTERVAL,
    VERIFY_PATH,
    Clock,
    World,
    establish,
    make_prober,
)

CONNECTIONS = 8


async def _drain(prober: HealthProber) -> None:
    for _ in range(100):
        if await prober.probe_once() == 0:
            return
        await asyncio.sleep(0)  # let the other replica claim between rounds


async def test_replicas_probe_each_connection_once_per_interval(
    services: Services,
    http: httpx.AsyncClient,
    world: World,
    prober: HealthProber,  # stops the server's own prober
    clock: Clock,
) -> None:
    ids = {await establish(http, world, name=f"HR {i}") for i in range(CONNECTIONS)}
    # Intervals count from the establishing, however long it took on a loaded machine.
    clock.now = utcnow()
    other_db = Database(services.settings.database_url)
    try:
        a = make_prober(services, clock, concurrency=3, name="a")
        b = make_prober(services, clock, db=other_db, concurrency=3, name="b")
        for round_ in range(1, 4):
            clock.advance(PROBE_INTERVAL)
            calls = len(world.fake.seen(VERIFY_PATH))
            await asyncio.gather(_drain(a), _drain(b))
            probed = Counter(a.probed_ids + b.probed_ids)
            assert set(probed) == ids
            assert set(probed.values()) == {round_}  # once per connection per interval
            assert len(world.fake.seen(VERIFY_PATH)) == calls + CONNECTIONS
        if services.db.dialect == "postgresql":
            assert a.probed and b.probed  # SKIP LOCKED: both replicas took a share

        # Replica A claims the next round's work and dies before probing it.
        clock.advance(PROBE_INTERVAL)
        async with services.db.transaction(TenantScope.system_scope()) as session:
            claims = await HealthStateRepository(session).claim_due(
                clock(), CONNECTIONS, a.lease, a.interval
            )
        assert {c.connection_id for c in claims} == ids
        assert await b.probe_once() == 0  # leased: B leaves A's claims alone meanwhile
        clock.advance(a.lease.total_seconds())
        before = b.probed
        await _drain(b)  # the lease ran out: B takes the work over
        assert b.probed - before == CONNECTIONS
    finally:
        await other_db.dispose()
