"""Health fixtures: the connections world (fake provider + credential), a controlled clock,
and a prober the test drives (the server's own prober is stopped)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.domain.health import HealthPolicy
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import (
    AuditEvent,
    ConnectionHealth,
    IntegrationConnection,
    IntegrationFailure,
    IntegrationRun,
)
from studio_integrations.services import Services
from studio_integrations.workers.health_prober import HealthProber
from tests.connections.conftest import (  # noqa: F401  (fixtures)
    ESTABLISH,
    VERIFY_PATH,
    World,
    establish_input,
    fake,
    ok,
    world,
)
from tests.support.clock import Clock

PROBE_INTERVAL = 10.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_prober(
    services: Services,
    clock: Callable[[], datetime],
    *,
    db: Database | None = None,
    concurrency: int = 10,
    name: str = "test",
) -> HealthProber:
    policy = replace(
        HealthPolicy.from_settings(services.settings),
        clock=clock,
        probe_interval=timedelta(seconds=PROBE_INTERVAL),
    )
    services.health_policy = policy  # what requests (testConnection...) record runs with
    return HealthProber(
        db or services.db,
        services.vault,
        services.provider_caller,
        interval=PROBE_INTERVAL,
        timeout=5,
        concurrency=concurrency,
        policy=policy,
        name=name,
    )


@pytest.fixture
async def prober(services: Services, clock: Clock) -> HealthProber:
    """A prober on the controlled clock; the server's own is stopped so it cannot race."""
    assert services.health_prober is not None
    await services.health_prober.stop()
    return make_prober(services, clock)


async def establish(
    http: httpx.AsyncClient, acme: World, name: str = "HR production", **over: Any
) -> str:
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(acme.provider_id, acme.credential_id, name=name, **over)},
        acme.token,
    )
    payload = data["establishConnection"]
    assert payload["userErrors"] == [], payload
    connection_id: str = payload["connection"]["id"]
    return connection_id


@dataclass
class HealthRows:
    health: ConnectionHealth
    connection: IntegrationConnection
    runs: list[IntegrationRun]  # newest first
    failures: list[IntegrationFailure]  # oldest first
    changes: list[dict[str, Any]]  # ConnectionHealthChanged data, oldest first


async def health_rows(db: Database, connection_id: str, tenant: str = "acme") -> HealthRows:
    async with db.session(TenantScope.of(tenant)) as s:
        health = (
            await s.execute(
                select(ConnectionHealth).where(ConnectionHealth.connection_id == connection_id)
            )
        ).scalar_one()
        connection = (
            await s.execute(
                select(IntegrationConnection).where(IntegrationConnection.id == connection_id)
            )
        ).scalar_one()
        runs = (
            await s.execute(
                select(IntegrationRun)
                .where(IntegrationRun.connection_id == connection_id)
                .order_by(IntegrationRun.id.desc())
            )
        ).scalars()
        failures = (
            await s.execute(
                select(IntegrationFailure)
                .where(IntegrationFailure.connection_id == connection_id)
                .order_by(IntegrationFailure.id)
            )
        ).scalars()
        events = (
            await s.execute(
                select(AuditEvent)
                .where(
                    AuditEvent.subject_id == connection_id,
                    AuditEvent.type == "ConnectionHealthChanged",
                )
                .order_by(AuditEvent.id)
            )
        ).scalars()
        return HealthRows(health, connection, list(runs), list(failures), [e.data for e in events])
