"""The global catalogue: shipped valid, loaded idempotently by migrate and seed-demo, versioned."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from studio_integrations.cli import main
from studio_integrations.core.enums import ApiClientStatus, AuthMode, ProviderStatus
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import ExternalApiClient, Provider
from studio_integrations.seed.catalogue import CatalogueError, load_catalogue, read_catalogue
from studio_integrations.services import Services
from tests.providers.conftest import CATALOGUE_KEYS, counts
from tests.support.backends import Backend


def _catalogue_doc() -> dict[str, Any]:
    text = resources.files("studio_integrations.seed").joinpath("catalogue.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


async def _snapshot(db: Database) -> dict[str, tuple[Any, ...]]:
    """Every column of every global row, by id."""
    rows: dict[str, tuple[Any, ...]] = {}
    async with db.session(TenantScope.system_scope()) as session:
        for model in (Provider, ExternalApiClient):
            for row in (await session.execute(select(model))).scalars():
                rows[row.id] = tuple(getattr(row, c.key) for c in model.__table__.columns)
    return rows


def test_the_shipped_catalogue_is_valid_and_has_the_required_providers() -> None:
    catalogue = read_catalogue()
    by_key = {e.provider.key: e for e in catalogue.entries}
    assert set(by_key) == CATALOGUE_KEYS
    assert {by_key[k].provider.category.value for k in ("twilio", "vonage", "sinch")} == {"SMS"}
    for key, entry in by_key.items():
        implemented = [c for c in entry.clients if c.status == ApiClientStatus.IMPLEMENTED]
        assert implemented, key
        assert all(c.assembly.startswith("ConnectSoft.") for c in entry.clients)
        assert all(c.assembly.endswith(".ApiClient") for c in entry.clients)
        assert 0 < entry.provider.latency_threshold_ms <= 5000
        assert entry.provider.verification.path.startswith("/")
    deputy = by_key["deputy"].provider
    assert deputy.base_url == "https://{install}.{geo}.deputy.com"
    assert (deputy.verification.method, deputy.verification.path) == ("GET", "/api/v1/me")
    assert deputy.configuration_schema["required"] == ["install", "geo"]
    assert by_key["twilio"].provider.auth_modes == [AuthMode.BASIC]
    assert catalogue.version >= 2  # v2 added the auth schemes
    assert by_key["messagebird"].provider.auth_scheme == {
        "apiKey": {"in": "header", "names": ["Authorization"], "prefix": "AccessKey"}
    }
    assert by_key["vonage"].provider.auth_scheme == {
        "apiKey": {"in": "query", "names": ["api_key", "api_secret"]}
    }
    assert by_key["deputy"].provider.auth_scheme == {
        "bearer": {"header": "Authorization", "prefix": "OAuth"}
    }
    assert by_key["twilio"].provider.auth_scheme is None
    assert by_key["twilio"].provider.verification.path == "/Accounts/{accountSid}.json"
    assert by_key["bill"].provider.base_url.endswith("bill.com/connect/v3")
    assert "invoices.sync" in by_key["bill"].provider.capabilities
    assert "campaigns.trigger" in by_key["braze"].provider.capabilities


def test_a_malformed_catalogue_is_refused_with_the_entry_named() -> None:
    doc = _catalogue_doc()
    doc["providers"][0]["apiClients"][0]["version"] = "1.9"
    with pytest.raises(CatalogueError, match=r"deputy.*input\.version.*INVALID_SEMVER"):
        read_catalogue(json.dumps(doc))
    doc = _catalogue_doc()
    doc["providers"][1]["apiClients"][0]["capabilities"].append("invoices.sync")
    with pytest.raises(CatalogueError, match=r"braze.*UNDECLARED_CAPABILITY"):
        read_catalogue(json.dumps(doc))


async def test_loading_twice_changes_nothing(services: Services) -> None:
    first = await load_catalogue(services.db)
    assert (first.providers_added, first.clients_added) == (7, 9)
    before, counted = await _snapshot(services.db), await counts(services.db)

    again = await load_catalogue(services.db)

    assert not again.changed
    assert (again.providers_unchanged, again.clients_unchanged) == (7, 9)
    assert await _snapshot(services.db) == before  # same ids, versions, updated_at
    assert await counts(services.db) == counted
    assert counted.audit_events == 0  # global rows belong to no tenant's audit log


async def test_a_newer_catalogue_updates_in_place_and_an_older_one_never_downgrades(
    services: Services,
) -> None:
    await load_catalogue(services.db)
    before = await _snapshot(services.db)
    v1 = _catalogue_doc()
    v2 = _catalogue_doc()
    v2["version"] = v1["version"] + 1
    twilio = next(p for p in v2["providers"] if p["key"] == "twilio")
    twilio["latencyThresholdMs"] = 900
    twilio["apiClients"].append(
        {
            "assembly": "ConnectSoft.Twilio.ApiClient",
            "version": "3.10.0",
            "status": "IMPLEMENTED",
            "capabilities": ["messages.send"],
        }
    )
    v2["providers"] = [p for p in v2["providers"] if p["key"] != "messagebird"]

    result = await load_catalogue(services.db, read_catalogue(json.dumps(v2)))

    assert (result.providers_updated, result.providers_unchanged) == (1, 5)
    assert result.version == v1["version"] + 1
    assert (result.providers_deprecated, result.clients_added) == (1, 1)
    assert result.clients_deprecated == 1  # MessageBird's client
    after = await _snapshot(services.db)
    assert set(before) < set(after)  # same rows kept, one client added
    async with services.db.session(TenantScope.system_scope()) as session:
        rows = {p.key: p for p in (await session.execute(select(Provider))).scalars()}
        assert len(rows) == 7
        assert rows["twilio"].latency_threshold_ms == 900
        assert rows["twilio"].catalogue_version == v2["version"]
        assert rows["twilio"].version == 2  # optimistic-lock version bumped once
        assert rows["deputy"].version == 1
        assert rows["messagebird"].status == ProviderStatus.DEPRECATED

    stale = await load_catalogue(services.db, read_catalogue(json.dumps(v1)))

    assert not stale.changed
    assert stale.providers_skipped == 2  # twilio and messagebird were written by v2
    async with services.db.session(TenantScope.system_scope()) as session:
        twilio_row = (
            await session.execute(select(Provider).where(Provider.key == "twilio"))
        ).scalar_one()
        assert twilio_row.latency_threshold_ms == 900


async def test_a_changed_auth_scheme_alone_changes_the_entry(services: Services) -> None:
    await load_catalogue(services.db)
    shipped = _catalogue_doc()
    newer = _catalogue_doc()
    newer["version"] = shipped["version"] + 1
    sinch = next(p for p in newer["providers"] if p["key"] == "sinch")
    sinch["authScheme"] = {"bearer": {"header": "X-Sinch-Token", "prefix": ""}}
    deputy = next(p for p in newer["providers"] if p["key"] == "deputy")
    del deputy["authScheme"]  # back to the defaults

    result = await load_catalogue(services.db, read_catalogue(json.dumps(newer)))

    assert (result.providers_updated, result.providers_unchanged) == (2, 5)
    async with services.db.session(TenantScope.system_scope()) as session:
        rows = {p.key: p for p in (await session.execute(select(Provider))).scalars()}
        assert rows["sinch"].auth_scheme == sinch["authScheme"]
        assert rows["sinch"].catalogue_version == newer["version"]
        assert rows["deputy"].auth_scheme is None
    after = await _snapshot(services.db)

    again = await load_catalogue(services.db, read_catalogue(json.dumps(newer)))
    older = await load_catalogue(services.db)  # the shipped file: never a downgrade

    assert not again.changed and not older.changed
    assert older.providers_skipped == 2
    assert await _snapshot(services.db) == after


def test_a_catalogue_scheme_is_checked_like_a_registration() -> None:
    doc = _catalogue_doc()
    twilio = next(p for p in doc["providers"] if p["key"] == "twilio")
    twilio["authScheme"] = {"apiKey": {"names": ["X-Twilio-Key"]}}  # twilio lists BASIC only
    with pytest.raises(CatalogueError, match=r"twilio.*input\.authScheme.*INVALID_AUTH_SCHEME"):
        read_catalogue(json.dumps(doc))


async def test_concurrent_loads_never_duplicate(services: Services) -> None:
    await asyncio.gather(*(load_catalogue(services.db) for _ in range(3)))
    counted = await counts(services.db)
    assert (counted.providers, counted.clients) == (7, 9)


async def test_migrate_and_seed_demo_load_the_catalogue_once(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STUDIO_MASTER_KEY", "test-master-key")
    db = Database(backend.database_url)
    try:
        assert await asyncio.to_thread(main, ["migrate"]) == 0
        loaded = await _snapshot(db)
        assert len(loaded) == 16
        assert await asyncio.to_thread(main, ["migrate"]) == 0
        assert await asyncio.to_thread(main, ["seed-demo", "--tenant", "acme"]) == 0
        assert await _snapshot(db) == loaded
    finally:
        await db.dispose()
