"""Fixtures: back ends, settings, services, a live server, tokens and clients."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.auth.scopes import Scope, parse_scopes
from studio_integrations.auth.tokens import mint_dev_token
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from tests.support.backends import (
    PG_ADMIN_DSN,
    REDIS_URL,
    Backend,
    PostgresTemplate,
    SqliteTemplate,
    port_open,
    unavailable,
)
from tests.support.live import LiveServer, serve

BACKENDS = ["sqlite", "postgres"]
TEST_SIGNING_KEY = "test-signing-key-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate | None]:
    if not port_open(PG_ADMIN_DSN, 5432):
        yield None
        return
    template = PostgresTemplate()
    yield template
    template.close()


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: SqliteTemplate,
    postgres_template: PostgresTemplate | None,
) -> AsyncIterator[Backend]:
    """Each database + bus test runs on SQLite + memory:// and on PostgreSQL + Redis."""
    if request.param == "sqlite":
        yield Backend("sqlite", sqlite_template.fresh(tmp_path), "memory://")
        return
    if postgres_template is None:
        unavailable("PostgreSQL at 127.0.0.1:5432")
    if not port_open(REDIS_URL, 6379):
        unavailable("Redis at 127.0.0.1:6379")
    assert postgres_template is not None
    name, url = await postgres_template.fresh()
    try:
        yield Backend("postgres", url, REDIS_URL)
    finally:
        await postgres_template.drop(name)


def make_settings(backend: Backend, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": backend.database_url,
        "broadcast_url": backend.broadcast_url,
        "state_dir": tmp_path / "state",
        "dev_signing_key": TEST_SIGNING_KEY,
        "master_key": "test-master-key",
        "bus_namespace": f"test-{uuid.uuid4().hex[:8]}",  # isolates tests sharing one Redis
        "outbox_poll_seconds": 0.05,
        "allow_loopback_targets": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Started services without an HTTP server (for domain and worker tests)."""
    svc = Services.build(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with serve(create_app(settings)) as live:
        yield live


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(settings: Settings) -> TokenFactory:
    def factory(
        tenant: str = "acme",
        scopes: str | set[Scope] | frozenset[Scope] = "all",
        subject: str = "alice",
        name: str | None = "Alice",
        ttl: timedelta = timedelta(minutes=30),
    ) -> str:
        resolved = parse_scopes(scopes) if isinstance(scopes, str) else frozenset(scopes)
        return mint_dev_token(
            settings, tenant=tenant, subject=subject, scopes=resolved, name=name, ttl=ttl
        )

    return factory


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client
