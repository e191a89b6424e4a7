"""Credential repository: the tenant's credential references and the connections bound to
them. Filters arrive already validated by ``domain.credentials``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_

from studio_integrations.core.enums import AuthMode, RotationStrategy
from studio_integrations.persistence.models import Credential, IntegrationConnection
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository


@dataclass(frozen=True, slots=True)
class CredentialFilter:
    auth_mode: AuthMode | None = None
    rotation_strategy: RotationStrategy | None = None
    search: str | None = None
    expiring_within_days: int | None = None


class CredentialRepository(TenantRepository[Credential]):
    model = Credential

    async def by_reference(self, key_vault_ref: str) -> Credential | None:
        stmt = self.select().where(Credential.key_vault_ref == key_vault_ref)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def search(
        self, flt: CredentialFilter, page: PageRequest, *, expiring_before: datetime | None
    ) -> Page[Credential]:
        """``expiring_before`` is ``flt.expiring_within_days`` resolved against the clock."""
        stmt = self.select()
        if flt.auth_mode is not None:
            stmt = stmt.where(Credential.auth_mode == flt.auth_mode)
        if flt.rotation_strategy is not None:
            stmt = stmt.where(Credential.rotation_strategy == flt.rotation_strategy)
        if flt.search:
            term = flt.search.strip().lower()
            stmt = stmt.where(
                or_(
                    func.lower(Credential.key_vault_ref).contains(term, autoescape=True),
                    func.lower(func.coalesce(Credential.name, "")).contains(term, autoescape=True),
                )
            )
        if expiring_before is not None:
            stmt = stmt.where(
                Credential.expires_at.is_not(None), Credential.expires_at <= expiring_before
            )
        return await self.page(stmt, page)


class BoundConnectionRepository(TenantRepository[IntegrationConnection]):
    model = IntegrationConnection

    async def for_credentials(
        self, credential_ids: Sequence[str]
    ) -> dict[str, list[IntegrationConnection]]:
        """One statement for many credentials (DataLoader batch shape), newest first."""
        by_credential: dict[str, list[IntegrationConnection]] = defaultdict(list)
        if credential_ids:
            stmt = (
                self.select()
                .where(IntegrationConnection.credential_id.in_(set(credential_ids)))
                .order_by(IntegrationConnection.id.desc())
            )
            for row in (await self.session.execute(stmt)).scalars():
                assert row.credential_id is not None
                by_credential[row.credential_id].append(row)
        return by_credential
