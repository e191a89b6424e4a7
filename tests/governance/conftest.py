"""Governance fixtures: servers with chosen limits, and a valid mutation to spend budget on."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.auth.scopes import Scope
from studio_integrations.persistence.models import AuditEvent, OutboxMessage, Provider
from studio_integrations.services import Services
from tests.conftest import make_settings
from tests.support.backends import Backend
from tests.support.jwks import AUDIENCE, ISSUER, SigningKey, identity_provider, rsa_key
from tests.support.live import LiveServer, serve
from tests.support.rows import row_counts

REGISTER_PROVIDER = """
mutation ($input: RegisterProviderInput!) {
  registerProvider(input: $input) { provider { id key } userErrors { field code message } }
}
"""

_keys = itertools.count()


def provider_input(**overrides: Any) -> dict[str, Any]:
    """A valid registerProvider input with a fresh key each call."""
    values: dict[str, Any] = {
        "key": f"gov-{next(_keys)}",
        "name": "Governed",
        "category": "HR",
        "capabilities": ["employees.read"],
        "authModes": ["API_KEY"],
        "baseUrl": "https://hr.example.com/api",
        "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
        "configurationSchema": {"type": "object"},
    }
    values.update(overrides)
    return values


async def registry_counts(services: Services) -> dict[str, int]:
    return await row_counts(services.db, providers=Provider, audit=AuditEvent, outbox=OutboxMessage)


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[LiveServer]]


@pytest.fixture
def limited_server(backend: Backend, tmp_path: Path) -> ServerFactory:
    """``async with limited_server(max_query_cost=50) as server`` — a live app whose
    settings override the test defaults (same database and bus as the ``server`` fixture
    would use; several servers may share them, like replicas)."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[LiveServer]:
        settings = make_settings(backend, tmp_path, **overrides)
        async with serve(create_app(settings)) as live:
            yield live

    return factory


@contextlib.asynccontextmanager
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


@dataclass
class ProductionServer:
    """A server with ``STUDIO_ENVIRONMENT=production`` and the identity provider it trusts."""

    live: LiveServer
    key: SigningKey

    def token(self, **claims: Any) -> str:
        claims.setdefault("scp", " ".join(s.value for s in Scope))
        return self.key.token(**claims)


@pytest.fixture
def production_server(limited_server: ServerFactory) -> ServerFactory:
    """``async with production_server(**overrides) as prod`` — production settings, tokens
    from a loopback JWKS (``prod.token(**claims)``)."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[ProductionServer]:
        key = rsa_key("prod-1")
        async with identity_provider(key) as idp:
            settings = {
                "environment": "production",
                "jwt_jwks_url": idp.url,
                "jwt_issuer": ISSUER,
                "jwt_audience": AUDIENCE,
                **overrides,
            }
            async with limited_server(**settings) as live:
                yield ProductionServer(live, key)

    return factory
