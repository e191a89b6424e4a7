"""DataLoaders: every by-id lookup of a request goes through one, batched per model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from studio_integrations.domain import connections as connections_domain
from studio_integrations.domain.credentials import connections_for_credentials
from studio_integrations.domain.providers import api_clients_for_providers
from studio_integrations.domain.webhooks import attempts_for_deliveries
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import (
    Base,
    ConnectionHealth,
    ExternalApiClient,
    HealthSnapshot,
    IntegrationConnection,
    IntegrationRun,
    RunAttempt,
    WebhookDeliveryAttempt,
)
from studio_integrations.persistence.repository import TenantRepository

# (connection id, how many of its newest runs)
RunsKey = tuple[str, int]
# (connection id, from, to)
TimelineKey = tuple[str, datetime | None, datetime | None]


SessionOpener = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class Loaders:
    """``read`` opens the session a batch reads in: the request's shared session over HTTP
    (``StudioContext.read``); by default a short read-only session per batch (subscription
    events)."""

    def __init__(
        self, db: Database, scope: TenantScope, *, read: SessionOpener | None = None
    ) -> None:
        self.read: SessionOpener = read or (lambda: db.read_session(scope))
        self._by_id: dict[type[Base], DataLoader[str, Any]] = {}
        self._lazy: dict[str, DataLoader[Any, Any]] = {}
        self._api_clients_by_provider: DataLoader[str, list[ExternalApiClient]] | None = None
        self._connections_by_credential: DataLoader[str, list[IntegrationConnection]] | None = None

    def close(self) -> None:
        """Drop every DataLoader, and the rows they hold, when the request is over. Each
        one's batch function refers back to these loaders: kept, that cycle would leave
        the rows to the cyclic collector instead of reference counting."""
        self._by_id.clear()
        self._lazy.clear()
        self._api_clients_by_provider = None
        self._connections_by_credential = None

    def by_id(self, model: type[Base]) -> DataLoader[str, Any]:
        loader = self._by_id.get(model)
        if loader is None:

            async def batch(ids: list[str]) -> list[Any]:
                async with self.read() as session:
                    return await TenantRepository(session, model).get_many(ids)

            loader = self._by_id[model] = DataLoader(load_fn=batch)
        return loader

    @property
    def api_clients_by_provider(self) -> DataLoader[str, list[ExternalApiClient]]:
        """A provider's visible API clients in SemVer order, one statement per batch."""
        if self._api_clients_by_provider is None:

            async def batch(provider_ids: list[str]) -> list[list[ExternalApiClient]]:
                async with self.read() as session:
                    found = await api_clients_for_providers(session, provider_ids)
                return [found.get(i, []) for i in provider_ids]

            self._api_clients_by_provider = DataLoader(load_fn=batch)
        return self._api_clients_by_provider

    @property
    def connections_by_credential(self) -> DataLoader[str, list[IntegrationConnection]]:
        """The connections bound to a credential, newest first, one statement per batch."""
        if self._connections_by_credential is None:

            async def batch(credential_ids: list[str]) -> list[list[IntegrationConnection]]:
                async with self.read() as session:
                    found = await connections_for_credentials(session, credential_ids)
                return [found.get(i, []) for i in credential_ids]

            self._connections_by_credential = DataLoader(load_fn=batch)
        return self._connections_by_credential

    def _loader(self, name: str, load_fn: Callable[[list[Any]], Awaitable[list[Any]]]) -> Any:
        loader = self._lazy.get(name)
        if loader is None:
            loader = self._lazy[name] = DataLoader(load_fn=load_fn)
        return loader

    @property
    def health_by_connection(self) -> DataLoader[str, ConnectionHealth | None]:
        """A connection's current health row (None before its first check)."""

        async def batch(ids: list[str]) -> list[ConnectionHealth | None]:
            async with self.read() as session:
                found = await connections_domain.health_for_connections(session, ids)
            return [found.get(i) for i in ids]

        loader: DataLoader[str, ConnectionHealth | None] = self._loader("health", batch)
        return loader

    @property
    def latest_runs(self) -> DataLoader[RunsKey, list[IntegrationRun]]:
        """The newest n runs of each connection: one statement per distinct n."""

        async def batch(keys: list[RunsKey]) -> list[list[IntegrationRun]]:
            by_limit: dict[int, list[str]] = defaultdict(list)
            for connection_id, limit in keys:
                by_limit[limit].append(connection_id)
            found: dict[RunsKey, list[IntegrationRun]] = {}
            async with self.read() as session:
                for limit, ids in by_limit.items():
                    runs = await connections_domain.latest_runs(session, ids, limit)
                    for connection_id in ids:
                        found[(connection_id, limit)] = runs.get(connection_id, [])
            return [found[k] for k in keys]

        loader: DataLoader[RunsKey, list[IntegrationRun]] = self._loader("latest_runs", batch)
        return loader

    @property
    def attempts_by_run(self) -> DataLoader[str, list[RunAttempt]]:
        async def batch(run_ids: list[str]) -> list[list[RunAttempt]]:
            async with self.read() as session:
                found = await connections_domain.attempts_for_runs(session, run_ids)
            return [found.get(i, []) for i in run_ids]

        loader: DataLoader[str, list[RunAttempt]] = self._loader("attempts", batch)
        return loader

    @property
    def health_timeline(self) -> DataLoader[TimelineKey, list[HealthSnapshot]]:
        """Snapshots per connection and range: one statement per distinct range."""

        async def batch(keys: list[TimelineKey]) -> list[list[HealthSnapshot]]:
            by_range: dict[tuple[datetime | None, datetime | None], list[str]] = defaultdict(list)
            for connection_id, start, end in keys:
                by_range[(start, end)].append(connection_id)
            found: dict[TimelineKey, list[HealthSnapshot]] = {}
            async with self.read() as session:
                for (start, end), ids in by_range.items():
                    rows = await connections_domain.health_timelines(session, ids, start, end)
                    for connection_id in ids:
                        found[(connection_id, start, end)] = rows.get(connection_id, [])
            return [found[k] for k in keys]

        loader: DataLoader[TimelineKey, list[HealthSnapshot]] = self._loader("timeline", batch)
        return loader

    @property
    def webhook_attempts(self) -> DataLoader[str, list[WebhookDeliveryAttempt]]:
        """A webhook delivery's attempts in order, one statement per batch."""

        async def batch(delivery_ids: list[str]) -> list[list[WebhookDeliveryAttempt]]:
            async with self.read() as session:
                found = await attempts_for_deliveries(session, delivery_ids)
            return [found.get(i, []) for i in delivery_ids]

        loader: DataLoader[str, list[WebhookDeliveryAttempt]] = self._loader(
            "webhook_attempts", batch
        )
        return loader
