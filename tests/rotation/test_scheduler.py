"""The rotation scheduler with a clock under test control: a credential entering its warning
window yields one CredentialExpiring event and one alert, not one per tick; an EXTERNAL
credential whose cadence passed gets one ROTATION_DUE alert per version; a GENERATED one is
rotated when due, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import select

from studio_integrations.core.clock import utcnow
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import AuditEvent
from studio_integrations.services import Services
from studio_integrations.workers.rotation_scheduler import RotationScheduler, TickReport
from tests.conftest import TokenFactory
from tests.rotation.conftest import (
    ALERTS,
    CREDENTIAL,
    World,
    ok,
    register_credential,
)
from tests.support.clock import Clock
from tests.support.live import LiveServer


def scheduler(services: Services, clock: Clock) -> RotationScheduler:
    return RotationScheduler(services.db, services.vault, services.provider_caller, clock=clock)


async def expiring_events(services: Services, credential_id: str) -> list[AuditEvent]:
    async with services.db.session(TenantScope.system_scope()) as session:
        rows = await session.execute(
            select(AuditEvent).where(
                AuditEvent.subject_id == credential_id, AuditEvent.type == "CredentialExpiring"
            )
        )
        return list(rows.scalars())


async def test_entering_the_warning_window_warns_once(
    server: LiveServer, http: httpx.AsyncClient, world: World, make_token: TokenFactory
) -> None:
    now = utcnow()
    expires = now + timedelta(days=10)
    credential_id, version = await register_credential(
        http,
        world.token,
        server.services.vault,
        "expiring-key",
        "v1",
        cadence=90,
        warning=14,
        expires_at=expires.isoformat(),
    )
    quiet_id, _ = await register_credential(
        http,
        world.token,
        server.services.vault,
        "quiet-key",
        "v1",
        cadence=90,
        warning=14,
        expires_at=(now + timedelta(days=60)).isoformat(),
    )
    clock = Clock(now - timedelta(days=5))  # 15 days left: outside the window
    worker = scheduler(server.services, clock)
    assert (await worker.tick()).expiring == 0
    assert await expiring_events(server.services, credential_id) == []

    clock.now = now  # 10 days left: inside
    assert (await worker.tick()).expiring == 1
    for later in (timedelta(minutes=5), timedelta(hours=1), timedelta(days=3)):
        clock.now = now + later
        assert (await worker.tick()).expiring == 0

    (event,) = await expiring_events(server.services, credential_id)
    assert event.actor_kind.value == "SYSTEM"
    assert event.data["reason"] == "EXPIRY_WARNING"
    assert event.data["currentVersion"] == version
    assert event.data["daysLeft"] == 10  # at the clock of the tick
    assert await expiring_events(server.services, quiet_id) == []

    # One alert for it, and none for the one expiring in 60 days.
    alerts = (await ok(http, ALERTS, {}, world.token))["credentialExpiryAlerts"]
    mine = [a for a in alerts if a["credential"]["id"] == credential_id]
    assert [(a["kind"], a["daysLeft"], a["currentVersion"]) for a in mine] == [
        ("EXPIRY", 9, version)  # the query runs on the real clock, seconds later
    ]
    assert all(a["credential"]["id"] != quiet_id for a in alerts)
    # Another tenant sees none of them.
    other = (await ok(http, ALERTS, {}, make_token(tenant="globex")))["credentialExpiryAlerts"]
    assert other == []


async def test_alerts_are_sorted_soonest_first(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    now = utcnow()
    vault = services.vault
    later_id, _ = await register_credential(
        http,
        world.token,
        vault,
        "later-key",
        "v",
        warning=14,
        expires_at=(now + timedelta(days=12)).isoformat(),
    )
    sooner_id, _ = await register_credential(
        http,
        world.token,
        vault,
        "sooner-key",
        "v",
        warning=14,
        expires_at=(now + timedelta(days=3, hours=1)).isoformat(),
    )
    alerts = (await ok(http, ALERTS, {}, world.token))["credentialExpiryAlerts"]
    assert [(a["credential"]["id"], a["daysLeft"]) for a in alerts] == [
        (sooner_id, 3),
        (later_id, 11),
    ]


async def test_a_due_external_credential_gets_one_alert_per_version(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    now = utcnow()
    clock = Clock(now + timedelta(days=29))
    worker = scheduler(server.services, clock)
    # world's credential: EXTERNAL, cadence 90 days, registered just now.
    assert (await worker.tick()).due_alerts == 0
    clock.now = now + timedelta(days=91)
    assert (await worker.tick()).due_alerts == 1
    clock.now = now + timedelta(days=92)
    report = await worker.tick()
    assert (report.due_alerts, report.rotated) == (0, 0)  # EXTERNAL: never rotated by itself
    (event,) = await expiring_events(server.services, world.credential_id)
    assert event.data["reason"] == "ROTATION_DUE"
    assert event.data["newVersionNeeded"] is True
    assert event.data["daysLeft"] == -2


async def test_a_due_generated_credential_is_rotated_once(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault = server.services.vault
    credential_id, first = await register_credential(
        http,
        world.token,
        vault,
        "auto-secret",
        "seed",
        strategy="GENERATED",
        cadence=2,
        warning=1,
    )
    now = utcnow()
    clock = Clock(now + timedelta(days=1))
    worker = scheduler(server.services, clock)
    assert (await worker.tick()).rotated == 0
    clock.now = now + timedelta(days=2, hours=1)
    assert (await worker.tick()).rotated == 1
    clock.now = now + timedelta(days=2, hours=2)
    assert (await worker.tick()).rotated == 0  # next due two days after this rotation

    node = (await ok(http, CREDENTIAL, {"id": credential_id}, world.token))["node"]
    (rotation,) = node["rotations"]
    assert rotation["status"] == "PROMOTED"
    assert rotation["requestedBy"] == "studio-integrations"
    assert rotation["previousVersion"] == first
    assert node["currentVersion"] == rotation["newVersion"]
    assert (await vault.list_versions("auto-secret"))[-1].version == rotation["newVersion"]


async def test_stopping_lets_the_tick_in_hand_finish(services: Services) -> None:
    """``stop`` does not cancel a tick midway (a rotation half-done, or a statement cut off
    on SQLite's write lock): the loop leaves after it; and no tick starts after ``stop``."""
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    class Held(RotationScheduler):
        async def tick(self) -> TickReport:
            started.set()
            await release.wait()
            finished.append("tick")
            return TickReport()

    worker = Held(services.db, services.vault, services.provider_caller, interval_seconds=0.01)
    worker.start()
    task = worker._task
    assert task is not None
    await asyncio.wait_for(started.wait(), 30)
    stopping = asyncio.ensure_future(worker.stop(grace=60))
    await asyncio.sleep(0.05)  # stop has begun waiting
    release.set()
    await stopping
    assert finished == ["tick"]
    assert task.done() and not task.cancelled()
