"""DataLoaders: every by-id lookup of a request goes through one, batched per model."""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from studio_integrations.domain.credentials import connections_for_credentials
from studio_integrations.domain.providers import api_clients_for_providers
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import Base, ExternalApiClient, IntegrationConnection
from studio_integrations.persistence.repository import TenantRepository


class Loaders:
    def __init__(self, db: Database, scope: TenantScope) -> None:
        self._db = db
        self._scope = scope
        self._by_id: dict[type[Base], DataLoader[str, Any]] = {}
        self._api_clients_by_provider: DataLoader[str, list[ExternalApiClient]] | None = None
        self._connections_by_credential: DataLoader[str, list[IntegrationConnection]] | None = None

    def by_id(self, model: type[Base]) -> DataLoader[str, Any]:
        loader = self._by_id.get(model)
        if loader is None:

            async def batch(ids: list[str]) -> list[Any]:
                async with self._db.session(self._scope) as session:
                    return await TenantRepository(session, model).get_many(ids)

            loader = self._by_id[model] = DataLoader(load_fn=batch)
        return loader

    @property
    def api_clients_by_provider(self) -> DataLoader[str, list[ExternalApiClient]]:
        """A provider's visible API clients in SemVer order, one statement per batch."""
        if self._api_clients_by_provider is None:

            async def batch(provider_ids: list[str]) -> list[list[ExternalApiClient]]:
                async with self._db.session(self._scope) as session:
                    found = await api_clients_for_providers(session, provider_ids)
                return [found.get(i, []) for i in provider_ids]

            self._api_clients_by_provider = DataLoader(load_fn=batch)
        return self._api_clients_by_provider

    @property
    def connections_by_credential(self) -> DataLoader[str, list[IntegrationConnection]]:
        """The connections bound to a credential, newest first, one statement per batch."""
        if self._connections_by_credential is None:

            async def batch(credential_ids: list[str]) -> list[list[IntegrationConnection]]:
                async with self._db.session(self._scope) as session:
                    found = await connections_for_credentials(session, credential_ids)
                return [found.get(i, []) for i in credential_ids]

            self._connections_by_credential = DataLoader(load_fn=batch)
        return self._connections_by_credential
