"""The global provider catalogue: shipped as ``catalogue.json``, loaded by ``migrate`` and
``seed-demo``.

Loading is idempotent and versioned. Entries are matched by provider key and by
(provider, assembly, version) for clients; a changed entry is updated in place, an unchanged
one is not touched (its optimistic-lock version and ``updated_at`` stay as they are), and
nothing is ever duplicated. Every row written records the catalogue ``version`` that wrote
it, and a row written by a newer catalogue is never overwritten by an older one (a replica
of the previous release running ``migrate`` during a rolling upgrade). Entries dropped from
the file are marked DEPRECATED rather than deleted: connections may still use them.

An entry's ``authScheme`` (how each of its auth modes is applied, ``domain.providers``) is
part of the entry: a change in it alone updates the row. Schemes are static, so BILL v3's
session login (``POST /login`` with devKey, username, password and organizationId returns a
``sessionId`` every later call must send beside the ``devKey`` header) is shipped in its
closest static form, the ``devKey`` header alone: a verification call of a BILL connection
fails authentication until the caller performs that login itself.

Global rows belong to no tenant, so loading emits no tenant event; it runs in a
``TenantScope.system_scope()`` session, the only kind allowed to write them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.enums import ApiClientStatus, ProviderStatus
from studio_integrations.core.errors import UserInputError, UserInputErrors
from studio_integrations.core.ids import new_id
from studio_integrations.domain.providers import (
    CheckedApiClient,
    CheckedProvider,
    ProviderDefinition,
    VerificationRequest,
    check_api_client,
    check_provider,
)
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import ExternalApiClient, Provider

CATALOGUE_RESOURCE = "catalogue.json"
_ATTEMPTS = 3


class CatalogueError(ValueError):
    """The shipped catalogue is malformed (a packaging bug: tests load the real file)."""


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    provider: CheckedProvider
    status: ProviderStatus
    clients: tuple[CheckedApiClient, ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: int
    entries: tuple[CatalogueEntry, ...]


def _messages(exc: UserInputError | UserInputErrors) -> str:
    errors = exc.errors if isinstance(exc, UserInputErrors) else [exc]
    return "; ".join(f"{e.field}: {e.message} ({e.code})" for e in errors)


def _entry(doc: dict[str, Any]) -> CatalogueEntry:
    key = doc.get("key", "?")
    try:
        provider = check_provider(
            ProviderDefinition(
                key=doc["key"],
                name=doc["name"],
                category=doc["category"],
                capabilities=doc["capabilities"],
                auth_modes=doc["authModes"],
                base_url=doc["baseUrl"],
                verification=VerificationRequest.from_document(doc["verification"]),
                configuration_schema=doc.get("configurationSchema"),
                description=doc.get("description"),
                latency_threshold_ms=doc.get("latencyThresholdMs"),
                documentation_url=doc.get("documentationUrl"),
                auth_scheme=doc.get("authScheme"),
            )
        )
        clients = tuple(
            check_api_client(
                assembly=c["assembly"],
                version=c["version"],
                capabilities=c["capabilities"],
                status=c.get("status", ApiClientStatus.IMPLEMENTED),
                provider_capabilities=provider.capabilities,
            )
            for c in doc.get("apiClients", [])
        )
        status = ProviderStatus(doc.get("status", ProviderStatus.ACTIVE))
    except (UserInputError, UserInputErrors) as exc:
        raise CatalogueError(f"catalogue provider {key!r}: {_messages(exc)}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogueError(f"catalogue provider {key!r}: malformed entry ({exc!r})") from exc
    seen = {(c.assembly, c.version) for c in clients}
    if len(seen) != len(clients):
        raise CatalogueError(f"catalogue provider {key!r}: a client version is listed twice")
    return CatalogueEntry(provider=provider, status=status, clients=clients)


def read_catalogue(text: str | None = None) -> Catalogue:
    """The shipped catalogue (or ``text``), validated by the same rules as registrations."""
    if text is None:
        text = (
            resources.files("studio_integrations.seed")
            .joinpath(CATALOGUE_RESOURCE)
            .read_text("utf-8")
        )
    doc = json.loads(text)
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise CatalogueError("catalogue version must be a positive integer")
    entries = tuple(_entry(p) for p in doc.get("providers", []))
    keys = [e.provider.key for e in entries]
    if len(set(keys)) != len(keys):
        raise CatalogueError("a provider key is listed twice")
    return Catalogue(version=version, entries=entries)


@dataclass
class CatalogueLoad:
    version: int
    providers_added: int = 0
    providers_updated: int = 0
    providers_unchanged: int = 0
    providers_deprecated: int = 0
    providers_skipped: int = 0  # written by a newer catalogue
    clients_added: int = 0
    clients_updated: int = 0
    clients_unchanged: int = 0
    clients_deprecated: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (
                self.providers_added,
                self.providers_updated,
                self.providers_deprecated,
                self.clients_added,
                self.clients_updated,
                self.clients_deprecated,
            )
        )

    def summary(self) -> str:
        return (
            f"provider catalogue v{self.version}: providers {self.providers_added} added, "
            f"{self.providers_updated} updated, {self.providers_unchanged} unchanged, "
            f"{self.providers_deprecated} deprecated, {self.providers_skipped} newer; "
            f"API clients {self.clients_added} added, {self.clients_updated} updated, "
            f"{self.clients_unchanged} unchanged, {self.clients_deprecated} deprecated"
        )


def _provider_fields(entry: CatalogueEntry) -> dict[str, Any]:
    p = entry.provider
    return {
        "name": p.name,
        "category": p.category.value,
        "description": p.description,
        "capabilities": p.capabilities,
        "auth_modes": [m.value for m in p.auth_modes],
        "status": entry.status,
        "base_url": p.base_url,
        "verification": p.verification.to_document(),
        "configuration_schema": p.configuration_schema,
        "latency_threshold_ms": p.latency_threshold_ms,
        "documentation_url": p.documentation_url,
        "auth_scheme": p.auth_scheme,
    }


def _apply(row: Any, values: dict[str, Any]) -> bool:
    """Assign only what differs, so an unchanged row gets no UPDATE at all."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


async def _load(session: AsyncSession, catalogue: Catalogue) -> CatalogueLoad:
    result = CatalogueLoad(version=catalogue.version)
    providers = {
        p.key: p
        for p in (await session.execute(select(Provider).where(Provider.tenant_id.is_(None))))
        .scalars()
        .all()
    }
    clients = {
        (c.provider_id, c.assembly, c.version): c
        for c in (
            await session.execute(
                select(ExternalApiClient).where(ExternalApiClient.tenant_id.is_(None))
            )
        )
        .scalars()
        .all()
    }
    listed_clients: set[str] = set()
    writable: set[str] = set()  # providers whose rows this catalogue may write

    rows_by_entry: list[tuple[CatalogueEntry, Provider]] = []
    for entry in catalogue.entries:
        fields = _provider_fields(entry)
        row = providers.get(entry.provider.key)
        if row is None:
            if fields["auth_scheme"] is None:  # SQL NULL (the defaults), not JSON null
                del fields["auth_scheme"]
            row = Provider(
                id=new_id("Provider"),
                tenant_id=None,
                key=entry.provider.key,
                catalogue_version=catalogue.version,
                **fields,
            )
            session.add(row)
            providers[row.key] = row
            result.providers_added += 1
        elif (row.catalogue_version or 0) > catalogue.version:
            result.providers_skipped += 1
            listed_clients.update(c.id for c in clients.values() if c.provider_id == row.id)
            continue
        elif _apply(row, fields):
            row.catalogue_version = catalogue.version
            result.providers_updated += 1
        else:
            result.providers_unchanged += 1
        writable.add(row.id)
        rows_by_entry.append((entry, row))
    # Providers before their clients: the models declare no relationship from which the
    # unit of work could order the inserts.
    await session.flush()

    for entry, row in rows_by_entry:
        for client in entry.clients:
            values = {
                "capabilities": client.capabilities,
                "status": client.status,
                "version_sort_key": client.version.sort_key,
            }
            existing = clients.get((row.id, client.assembly, str(client.version)))
            if existing is None:
                existing = ExternalApiClient(
                    id=new_id("ExternalApiClient"),
                    tenant_id=None,
                    provider_id=row.id,
                    assembly=client.assembly,
                    version=str(client.version),
                    **values,
                )
                session.add(existing)
                result.clients_added += 1
            elif _apply(existing, values):
                result.clients_updated += 1
            else:
                result.clients_unchanged += 1
            listed_clients.add(existing.id)

    listed_keys = {e.provider.key for e in catalogue.entries}
    for row in providers.values():
        if row.key in listed_keys or row.status == ProviderStatus.DEPRECATED:
            continue
        if (row.catalogue_version or 0) > catalogue.version:
            continue
        row.status = ProviderStatus.DEPRECATED
        row.catalogue_version = catalogue.version
        writable.add(row.id)
        result.providers_deprecated += 1
    for stale in clients.values():
        if (
            stale.id not in listed_clients
            and stale.provider_id in writable
            and stale.status != ApiClientStatus.DEPRECATED
        ):
            stale.status = ApiClientStatus.DEPRECATED
            result.clients_deprecated += 1
    return result


async def load_catalogue(db: Database, catalogue: Catalogue | None = None) -> CatalogueLoad:
    """Write the catalogue's global providers and clients; safe to run again and concurrently."""
    catalogue = catalogue or read_catalogue()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with db.transaction(TenantScope.system_scope()) as session:
                return await _load(session, catalogue)
        except IntegrityError:
            # Another process loaded the same entries between our read and our write: the
            # next attempt sees its rows and has nothing left to add.
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")
