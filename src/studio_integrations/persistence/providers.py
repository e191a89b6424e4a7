"""Provider and API client repositories: the registry's SQL, inside the session's tenant.

Visible providers are the tenant's own and the global catalogue (``SharedCatalog``: the
session guard adds that criterion); filters arrive already validated by ``domain.providers``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from studio_integrations.core.enums import ApiClientStatus, ProviderCategory, ProviderStatus
from studio_integrations.core.errors import UserInputError
from studio_integrations.persistence.models import ExternalApiClient, Provider
from studio_integrations.persistence.repository import (
    Page,
    PageRequest,
    TenantRepository,
    decode_cursor,
)


@dataclass(frozen=True, slots=True)
class ProviderFilter:
    category: ProviderCategory | None = None
    status: ProviderStatus | None = None
    capability: str | None = None
    search: str | None = None
    include_global: bool = True


@dataclass(frozen=True, slots=True)
class ApiClientFilter:
    provider_id: str | None = None
    status: ApiClientStatus | None = None
    assembly: str | None = None


class ProviderRepository(TenantRepository[Provider]):
    model = Provider

    async def by_key(self, key: str) -> list[Provider]:
        """Every visible provider with this key: the tenant's own and a global one."""
        result = await self.session.execute(self.select().where(Provider.key == key))
        return list(result.scalars())

    def _declares(self, capability: str) -> ColumnElement[bool]:
        if self.session.get_bind().dialect.name == "postgresql":
            return type_coerce(Provider.capabilities, JSONB).contains([capability])
        values = func.json_each(Provider.capabilities).table_valued("value")
        return exists(select(literal(1)).select_from(values).where(values.c.value == capability))

    async def search(self, flt: ProviderFilter, page: PageRequest) -> Page[Provider]:
        stmt = self.select()
        if flt.category is not None:
            stmt = stmt.where(Provider.category == flt.category.value)
        if flt.status is not None:
            stmt = stmt.where(Provider.status == flt.status)
        if flt.capability:
            stmt = stmt.where(self._declares(flt.capability))
        if flt.search:
            term = flt.search.strip().lower()
            stmt = stmt.where(
                or_(
                    func.lower(Provider.key).contains(term, autoescape=True),
                    func.lower(Provider.name).contains(term, autoescape=True),
                    func.lower(func.coalesce(Provider.description, "")).contains(
                        term, autoescape=True
                    ),
                )
            )
        if not flt.include_global:
            stmt = stmt.where(Provider.tenant_id.is_not(None))
        return await self.page(stmt, page)

    async def visible(self, ids: Sequence[str] | None, *, limit: int) -> list[Provider]:
        stmt = self.select().order_by(Provider.key, Provider.id).limit(limit)
        if ids is not None:
            stmt = stmt.where(Provider.id.in_(set(ids)))
        return list((await self.session.execute(stmt)).scalars())


class ApiClientRepository(TenantRepository[ExternalApiClient]):
    """Clients in SemVer order: by assembly, newest version first."""

    model = ExternalApiClient

    def ordered(self) -> Any:
        return self.select().order_by(
            ExternalApiClient.assembly,
            ExternalApiClient.version_sort_key.desc(),
            ExternalApiClient.id.desc(),
        )

    async def for_providers(
        self, provider_ids: Sequence[str]
    ) -> dict[str, list[ExternalApiClient]]:
        """One statement for many providers (DataLoader batch shape)."""
        by_provider: dict[str, list[ExternalApiClient]] = defaultdict(list)
        if provider_ids:
            stmt = self.ordered().where(ExternalApiClient.provider_id.in_(set(provider_ids)))
            for row in (await self.session.execute(stmt)).scalars():
                by_provider[row.provider_id].append(row)
        return by_provider

    async def versions_of(self, provider_id: str, assembly: str) -> list[ExternalApiClient]:
        stmt = self.select().where(
            ExternalApiClient.provider_id == provider_id, ExternalApiClient.assembly == assembly
        )
        return list((await self.session.execute(stmt)).scalars())

    async def search(self, flt: ApiClientFilter, page: PageRequest) -> Page[ExternalApiClient]:
        stmt = self.ordered()
        if flt.provider_id is not None:
            stmt = stmt.where(ExternalApiClient.provider_id == flt.provider_id)
        if flt.status is not None:
            stmt = stmt.where(ExternalApiClient.status == flt.status)
        if flt.assembly:
            stmt = stmt.where(ExternalApiClient.assembly == flt.assembly)
        if page.after is not None:
            # Keyset on the listing order; the cursor names the last row seen.
            last = await self.get(decode_cursor(page.after))
            if last is None:
                raise UserInputError(
                    "after is not a cursor from this API", field="after", code="INVALID_CURSOR"
                )
            A = ExternalApiClient
            stmt = stmt.where(
                or_(
                    A.assembly > last.assembly,
                    and_(
                        A.assembly == last.assembly,
                        or_(
                            A.version_sort_key < last.version_sort_key,
                            and_(A.version_sort_key == last.version_sort_key, A.id < last.id),
                        ),
                    ),
                )
            )
        rows = list((await self.session.execute(stmt.limit(page.first + 1))).scalars())
        return Page(
            items=rows[: page.first],
            has_next_page=len(rows) > page.first,
            has_previous_page=page.after is not None,
        )
