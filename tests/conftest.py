"""Fixtures: back ends, settings, the app in-process, a live server, tokens and clients.

The app runs in the test's event loop with its lifespan started (``app``); ``http`` talks to
it in-process through ``httpx.ASGITransport``. ``server`` serves the same app on a real
loopback socket, for tests where the socket is the point (WebSockets, other processes).
Background workers start only where a test asks: ``@pytest.mark.workers("dispatcher", …)``
(the outbox relay runs unless the marker leaves it out).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from studio_integrations.app import create_app
from studio_integrations.auth.scopes import Scope, parse_scopes
from studio_integrations.auth.tokens import mint_dev_token
from studio_integrations.services import Services
from studio_integrations.settings import WORKERS, Settings
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
DEFAULT_TEST_WORKERS = frozenset({"relay"})
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


@contextlib.asynccontextmanager
async def fresh_backend(
    name: str,
    directory: Path,
    sqlite_template: SqliteTemplate,
    postgres_template: PostgresTemplate | None,
) -> AsyncIterator[Backend]:
    """A fresh database copied from the migrated template, and its bus."""
    if name == "sqlite":
        yield Backend("sqlite", sqlite_template.fresh(directory), "memory://")
        return
    if postgres_template is None:
        unavailable("PostgreSQL at 127.0.0.1:5432")
    if not port_open(REDIS_URL, 6379):
        unavailable("Redis at 127.0.0.1:6379")
    assert postgres_template is not None
    db_name, url = await postgres_template.fresh()
    try:
        yield Backend("postgres", url, REDIS_URL)
    finally:
        await postgres_template.release(db_name)


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: SqliteTemplate,
    postgres_template: PostgresTemplate | None,
) -> AsyncIterator[Backend]:
    """Each database + bus test runs on SQLite + memory:// and on PostgreSQL + Redis."""
    async with fresh_backend(request.param, tmp_path, sqlite_template, postgres_template) as b:
        yield b


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
        "workers": DEFAULT_TEST_WORKERS,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def requested_workers(request: pytest.FixtureRequest) -> frozenset[str]:
    """The workers a test asks for with ``@pytest.mark.workers(...)`` (``"all"`` for every
    one); without the marker only the outbox relay runs, so nothing probes, dispatches or
    rotates under a test's row counts."""
    marker = request.node.get_closest_marker("workers")
    if marker is None:
        return DEFAULT_TEST_WORKERS
    if marker.args == ("all",):
        return frozenset(WORKERS)
    return frozenset(marker.args)


@pytest.fixture
def settings(request: pytest.FixtureRequest, backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, workers=requested_workers(request))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The app with its lifespan run (services started) in the test's event loop."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: Starlette) -> Services:
    """The app's started services (database, bus, vault, workers the test asked for)."""
    svc: Services = app.state.services
    return svc


@pytest.fixture
async def server(app: Starlette) -> AsyncIterator[LiveServer]:
    """The same app on a real loopback socket (its lifespan is already running)."""
    async with serve(app, lifespan="off") as live:
        yield live


TokenFactory = Callable[..., str]


def token_factory(settings: Settings) -> TokenFactory:
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
def make_token(settings: Settings) -> TokenFactory:
    return token_factory(settings)


def in_process_client(app: Starlette) -> httpx.AsyncClient:
    """An in-process client of the app: no socket, same request handling."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=10)


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(app) as client:
        yield client


# -- Worlds shared by a module ----------------------------------------------------------------
# For modules whose tests only read what a world holds (or prove that bad input changes
# nothing): one database, app and client per back end for the whole module. Such a module
# sets ``pytestmark = pytest.mark.asyncio(loop_scope="module")`` so its tests run in the
# loop the shared app lives in.


@dataclass
class SharedApp:
    app: Starlette
    http: httpx.AsyncClient
    settings: Settings
    make_token: TokenFactory

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: SqliteTemplate,
    postgres_template: PostgresTemplate | None,
) -> AsyncIterator[SharedApp]:
    directory = tmp_path_factory.mktemp("shared")
    async with fresh_backend(request.param, directory, sqlite_template, postgres_template) as b:
        settings = make_settings(b, directory, workers=requested_workers(request))
        application = create_app(settings)
        async with (
            application.router.lifespan_context(application),
            in_process_client(application) as client,
        ):
            yield SharedApp(application, client, settings, token_factory(settings))
