"""DataLoaders: every by-id lookup of a request goes through one, batched per model."""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import Base
from studio_integrations.persistence.repository import TenantRepository


class Loaders:
    def __init__(self, db: Database, scope: TenantScope) -> None:
        self._db = db
        self._scope = scope
        self._by_id: dict[type[Base], DataLoader[str, Any]] = {}

    def by_id(self, model: type[Base]) -> DataLoader[str, Any]:
        loader = self._by_id.get(model)
        if loader is None:

            async def batch(ids: list[str]) -> list[Any]:
                async with self._db.session(self._scope) as session:
                    return await TenantRepository(session, model).get_many(ids)

            loader = self._by_id[model] = DataLoader(load_fn=batch)
        return loader
