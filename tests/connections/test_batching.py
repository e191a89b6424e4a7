"""No N+1: a page of connections with provider, credential, health, health timeline and the
last 3 runs with their attempts costs the same number of SQL statements for 10 connections as
for 100."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import event
from sqlalchemy.orm import Session

from studio_integrations.core.enums import (
    AuthMode,
    CircuitState,
    ConnectionStatus,
    FailureCategory,
    HealthStatus,
    ProviderCategory,
    RotationStrategy,
    RunKind,
    RunStatus,
)
from studio_integrations.core.ids import new_id
from studio_integrations.persistence.db import BACKGROUND_KEY, Database, StudioSession, TenantScope
from studio_integrations.persistence.models import (
    ConnectionHealth,
    Credential,
    HealthSnapshot,
    IntegrationConnection,
    IntegrationRun,
    Provider,
    RunAttempt,
)
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.support.graphql import gql
from tests.support.live import LiveServer

RUNS_PER_CONNECTION = 4
ATTEMPTS_PER_RUN = 2
SNAPSHOTS_PER_CONNECTION = 3
PROVIDERS_PER_TENANT = 3

LIST = """
query {
  integrationConnections(first: 100) {
    nodes {
      id name status
      provider { id key category }
      credential { id keyVaultRef currentVersion }
      health { status circuitState checkedAt latencyP95Ms }
      healthTimeline { status checkedAt }
      runs(first: 3) {
        nodes {
          id kind status httpStatus externalRef
          attempts { number httpStatus errorCategory latencyMs }
        }
        pageInfo { hasNextPage }
      }
    }
    pageInfo { hasNextPage }
  }
}
"""

# The page, then one batch each: providers, credentials, health rows, timelines, latest runs,
# the attempts of those runs.
EXPECTED_STATEMENTS = 7


async def seed(db: Database, tenant: str, n: int) -> None:
    """``n`` connections over three providers, each with its own credential, a checked health
    row, a timeline and four runs of two attempts: written straight into the tenant. (The
    Studio query benchmark seeds with it too.)"""
    now = datetime.now(UTC)
    async with db.transaction(TenantScope.of(tenant)) as session:
        providers = [
            Provider(
                id=new_id("Provider"),
                tenant_id=tenant,
                key=f"{tenant}-p{i}",
                name=f"Provider {i}",
                category=ProviderCategory.HR.value,
                capabilities=["employees.read"],
                auth_modes=["API_KEY"],
                base_url="https://api.example.com",
                verification={"method": "GET", "path": "/me", "expectStatus": 200},
                configuration_schema={"type": "object"},
            )
            for i in range(PROVIDERS_PER_TENANT)
        ]
        credentials = [
            Credential(
                id=new_id("Credential"),
                tenant_id=tenant,
                name=f"key {i}",
                key_vault_ref=f"local://vault/secrets/{tenant}-key-{i}",
                auth_mode=AuthMode.API_KEY,
                current_version=uuid.uuid4().hex,
                expires_at=now + timedelta(days=90),
                rotation_strategy=RotationStrategy.EXTERNAL,
                cadence_days=90,
                expiry_warning_days=14,
            )
            for i in range(n)
        ]
        session.add_all([*providers, *credentials])
        await session.flush()
        connections = [
            IntegrationConnection(
                id=new_id("IntegrationConnection"),
                tenant_id=tenant,
                project_id="proj-1",
                provider_id=providers[i % PROVIDERS_PER_TENANT].id,
                name=f"{tenant} connection {i:03d}",
                status=ConnectionStatus.ACTIVE,
                auth_mode=AuthMode.API_KEY,
                credential_id=credentials[i].id,
                configuration={},
            )
            for i in range(n)
        ]
        session.add_all(connections)
        await session.flush()
        runs: list[IntegrationRun] = []
        for connection in connections:
            session.add(
                ConnectionHealth(
                    connection_id=connection.id,
                    tenant_id=tenant,
                    status=HealthStatus.HEALTHY,
                    circuit_state=CircuitState.CLOSED,
                    latency_p50_ms=40.0,
                    latency_p95_ms=90.0,
                    checked_at=now,
                    next_probe_at=now + timedelta(minutes=1),
                )
            )
            for k in range(SNAPSHOTS_PER_CONNECTION):
                session.add(
                    HealthSnapshot(
                        id=new_id("HealthSnapshot"),
                        tenant_id=tenant,
                        connection_id=connection.id,
                        status=HealthStatus.HEALTHY,
                        circuit_state=CircuitState.CLOSED,
                        checked_at=now - timedelta(minutes=SNAPSHOTS_PER_CONNECTION - k),
                    )
                )
            for k in range(RUNS_PER_CONNECTION):
                ok = k % 2 == 0
                runs.append(
                    IntegrationRun(
                        id=new_id("IntegrationRun"),
                        tenant_id=tenant,
                        connection_id=connection.id,
                        kind=RunKind.PROBE,
                        status=RunStatus.SUCCEEDED if ok else RunStatus.FAILED,
                        http_status=200 if ok else 503,
                        external_ref=f"req-{k}",
                        latency_ms=12.5,
                        error_category=None if ok else FailureCategory.SERVER_ERROR,
                        started_at=now - timedelta(seconds=RUNS_PER_CONNECTION - k),
                        finished_at=now,
                    )
                )
        session.add_all(runs)
        await session.flush()
        session.add_all(
            RunAttempt(
                id=new_id("RunAttempt"),
                tenant_id=tenant,
                run_id=run.id,
                number=a + 1,
                latency_ms=6.0,
                http_status=run.http_status if a == ATTEMPTS_PER_RUN - 1 else 503,
                error_category=(
                    run.error_category
                    if a == ATTEMPTS_PER_RUN - 1
                    else FailureCategory.SERVER_ERROR
                ),
            )
            for run in runs
            for a in range(ATTEMPTS_PER_RUN)
        )


async def test_listing_costs_a_constant_number_of_statements(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    db = server.services.db
    sizes = {"small": 10, "large": 100}
    for tenant, n in sizes.items():
        await seed(db, tenant, n)

    statements: dict[int, int] = {}
    for tenant, n in sizes.items():
        token = make_token(tenant=tenant, scopes="connections:read credentials:read providers:read")
        with db.count_statements() as counter:
            body = await gql(http, LIST, token=token)
        assert "errors" not in body, body
        page = body["data"]["integrationConnections"]
        nodes = page["nodes"]
        assert len(nodes) == n
        assert page["pageInfo"]["hasNextPage"] is False
        assert {node["provider"]["key"] for node in nodes} == {
            f"{tenant}-p{i}" for i in range(PROVIDERS_PER_TENANT)
        }
        assert len({node["credential"]["id"] for node in nodes}) == n
        for node in nodes:
            index = int(node["name"].rsplit(" ", 1)[1])
            assert node["credential"]["keyVaultRef"].endswith(f"{tenant}-key-{index}")
            assert node["health"]["status"] == "HEALTHY"
            assert node["health"]["checkedAt"] is not None
            assert len(node["healthTimeline"]) == SNAPSHOTS_PER_CONNECTION
            runs = node["runs"]["nodes"]
            # The newest three of four, newest first, each with its attempts in order.
            assert [r["externalRef"] for r in runs] == ["req-3", "req-2", "req-1"]
            assert node["runs"]["pageInfo"]["hasNextPage"] is True
            assert [r["status"] for r in runs] == ["FAILED", "SUCCEEDED", "FAILED"]
            for run in runs:
                assert [a["number"] for a in run["attempts"]] == [1, 2]
                assert run["attempts"][-1]["httpStatus"] == run["httpStatus"]
        statements[n] = counter.count
        if counter.count != EXPECTED_STATEMENTS:
            print("\n".join(counter.statements))

    assert statements == {10: EXPECTED_STATEMENTS, 100: EXPECTED_STATEMENTS}, statements


async def test_a_request_reads_in_one_session(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    """The page and all six batches share the request's session: one transaction, one pool
    checkout (there was one per loader batch)."""
    await seed(server.services.db, "acme", 10)
    token = make_token(tenant="acme", scopes="connections:read credentials:read providers:read")
    began: list[bool] = []

    def on_begin(session: Session, _transaction: object, _connection: object) -> None:
        if not session.info.get(BACKGROUND_KEY):
            began.append(True)

    event.listen(StudioSession, "after_begin", on_begin)
    try:
        body = await gql(http, LIST, token=token)
    finally:
        event.remove(StudioSession, "after_begin", on_begin)
    assert "errors" not in body, body
    assert len(body["data"]["integrationConnections"]["nodes"]) == 10
    assert len(began) == 1


async def test_batch_statements_made_once_stay_inside_the_tenant(services: Services) -> None:
    """The batch reads run statements made once (ids as a parameter); the tenant filter
    still reaches them: asked for another tenant's ids, a tenant gets nothing, and asked
    for both, only its own."""
    from sqlalchemy import select

    from studio_integrations.persistence.connections import HealthRepository, RunRepository
    from studio_integrations.persistence.repository import TenantRepository

    db = services.db
    await seed(db, "acme", 2)
    await seed(db, "globex", 2)
    ids: dict[str, list[str]] = {}
    for tenant in ("acme", "globex"):
        async with db.read_session(TenantScope.of(tenant)) as session:
            ids[tenant] = list((await session.execute(select(IntegrationConnection.id))).scalars())
    both = ids["acme"] + ids["globex"]
    for tenant, other in (("acme", "globex"), ("globex", "acme"), ("acme", "globex")):
        async with db.read_session(TenantScope.of(tenant)) as session:
            runs = await RunRepository(session).latest_for_connections(both, 3)
            health = await HealthRepository(session).for_connections(both)
            rows = await TenantRepository(session, IntegrationConnection).get_many(both)
        assert set(runs) == set(health) == set(ids[tenant])
        assert all(len(found) == 3 for found in runs.values())
        assert {run.tenant_id for found in runs.values() for run in found} == {tenant}
        assert [row.id if row else None for row in rows] == [
            i if i in ids[tenant] else None for i in both
        ]
        assert not set(ids[other]) & {row.id for row in rows if row}
