"""Two app processes (``studio-integrations serve``) over one PostgreSQL and one Redis.

- Together they probe each connection once per interval: no connection is probed more often
  than its claims allow (counts, not timings: load cannot fail it), and both processes did some of the work (each reports
  its count at ``/healthz``).
- One is killed (SIGKILL, mid-work): the other probes everything from then on, the dead one's
  claims included once their lease lapses.
- A subscriber on a third replica (this test's own server, whose prober is stopped) receives
  the health changes the surviving process detects, through Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import RunKind
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationRun
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from studio_integrations.workers.health_prober import LEASE_MARGIN_SECONDS
from tests.conftest import TEST_SIGNING_KEY, make_settings
from tests.connections.conftest import stop_prober
from tests.fakes.provider import Reply
from tests.health.conftest import VERIFY_PATH, World, establish
from tests.support.backends import Backend, free_port
from tests.support.gqlws import subscribe
from tests.support.live import LiveServer

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 1.0  # seconds between two probes of one connection
PROBE_TIMEOUT = 1.0  # the claim's lease is this plus a margin
CONNECTIONS = 6

HEALTH_CHANGED = """
subscription { healthChanged { connectionId previousStatus status } }
"""


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    if backend.name != "postgres":
        pytest.skip("processes share work through PostgreSQL and events through Redis")
    return make_settings(
        backend,
        tmp_path,
        probe_interval_seconds=INTERVAL,
        probe_timeout_seconds=PROBE_TIMEOUT,
    )


class AppProcess:
    """``python -m studio_integrations.cli serve`` with the test's settings."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STUDIO_DATABASE_URL": settings.database_url,
            "STUDIO_BROADCAST_URL": settings.broadcast_url,
            "STUDIO_BUS_NAMESPACE": settings.bus_namespace,
            "STUDIO_MASTER_KEY": "test-master-key",
            "STUDIO_DEV_SIGNING_KEY": TEST_SIGNING_KEY,
            "STUDIO_STATE_DIR": str(settings.state_dir),
            "STUDIO_ALLOW_LOOPBACK_TARGETS": "true",
            "STUDIO_PROBE_INTERVAL_SECONDS": str(INTERVAL),
            "STUDIO_PROBE_TIMEOUT_SECONDS": str(PROBE_TIMEOUT),
            "STUDIO_PORT": str(self.port),
            "STUDIO_LOG_LEVEL": "WARNING",
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "studio_integrations.cli",
            "serve",
            cwd=REPO,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        # A generous bound: a loaded machine can take long to import and migrate.
        deadline = asyncio.get_running_loop().time() + 120
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while asyncio.get_running_loop().time() < deadline:
                assert self.process.returncode is None, f"{self.name} exited at start"
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready")

    async def probed(self) -> int:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            workers = (await http.get("/healthz")).json()["workers"]
        assert workers["healthProber"]["running"] is True
        count: int = workers["healthProber"]["probed"]
        return count

    async def kill(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            await self.kill()


@pytest.fixture
async def processes(settings: Settings, server: LiveServer) -> AsyncIterator[list[AppProcess]]:
    await stop_prober(server.services)  # this test's own replica only serves the API
    apps = [AppProcess("A", settings), AppProcess("B", settings)]
    try:
        await asyncio.gather(*(app.start() for app in apps))
        yield apps
    finally:
        await asyncio.gather(*(app.stop() for app in apps))


async def probe_times(services: Services, since: datetime) -> dict[str, list[datetime]]:
    async with services.db.session(TenantScope.system_scope()) as session:
        rows = (
            await session.execute(
                select(IntegrationRun.connection_id, IntegrationRun.started_at)
                .where(IntegrationRun.kind == RunKind.PROBE, IntegrationRun.started_at >= since)
                .order_by(IntegrationRun.started_at)
            )
        ).all()
    times: dict[str, list[datetime]] = defaultdict(list)
    for connection_id, started_at in rows:
        times[connection_id].append(started_at)
    return times


async def probes_until(
    services: Services, since: datetime, *, at_least: int, of: list[str]
) -> dict[str, list[datetime]]:
    """The probe times since ``since``, once each connection of ``of`` has ``at_least``."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        times = await probe_times(services, since)
        if set(times) == set(of) and all(len(t) >= at_least for t in times.values()):
            return times
        assert asyncio.get_running_loop().time() < deadline, times
        await asyncio.sleep(INTERVAL / 4)


def most_probes_allowed(since: datetime, until: datetime) -> int:
    """Probes of one connection that can start in [since, until] when each is claimed at least
    one interval after the previous claim: one per interval, plus one claimed before ``since``
    whose run started after it. Load only lowers the count; a second replica probing the same
    connection (no lease) doubles it."""
    return int((until - since).total_seconds() / INTERVAL) + 2


async def test_two_processes_share_probes_and_one_survives_the_others_death(
    server: LiveServer,
    http: httpx.AsyncClient,
    world: World,
    processes: list[AppProcess],
) -> None:
    a, b = processes
    started = utcnow()
    connections = [await establish(http, world, name=f"HR {n}") for n in range(CONNECTIONS)]

    # Shared: every connection is probed several times, never more often than the claims
    # allow, and both processes did part of the work.
    times = await probes_until(server.services, started, at_least=3, of=connections)
    allowed = most_probes_allowed(started, utcnow())
    assert all(len(series) <= allowed for series in times.values()), (allowed, times)
    by_a, by_b = await a.probed(), await b.probed()
    assert by_a > 0 and by_b > 0, (by_a, by_b)
    assert by_a + by_b >= sum(len(series) for series in times.values())

    # A dies without a word; B probes everything from then on (A's claims after their lease).
    await a.kill()
    since = utcnow() + timedelta(seconds=PROBE_TIMEOUT + LEASE_MARGIN_SECONDS)
    after = await probes_until(server.services, since, at_least=2, of=connections)
    allowed = most_probes_allowed(since, utcnow())
    assert all(len(series) <= allowed for series in after.values()), (allowed, after)

    # B's detections reach a subscriber on another replica (this test's server) via Redis.
    async with subscribe(
        server.ws_url,
        world.token,
        HEALTH_CHANGED,
        live=server.services.live_subscribers,
        tenant_id="acme",
    ) as subscriber:
        world.fake.on(VERIFY_PATH, Reply(500))
        seen: dict[str, str] = {}
        while set(seen) != set(connections):
            change = (await subscriber.next(timeout=INTERVAL * 10))["healthChanged"]
            seen[change["connectionId"]] = change["status"]
    assert set(seen.values()) <= {"DEGRADED", "UNHEALTHY"}, seen
    assert await b.probed() > by_b
