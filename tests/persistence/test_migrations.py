"""Migrations: they run both ways on both back ends, and they match the models."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from studio_integrations.persistence.migrations import downgrade, upgrade
from studio_integrations.persistence.models import Base
from tests.support.backends import Backend


async def _diff(url: str) -> list[Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    await engine.dispose()
    return diff


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names


async def test_migrated_schema_matches_the_models(backend: Backend) -> None:
    assert await _diff(backend.database_url) == []


async def test_migrations_downgrade_and_upgrade_again(backend: Backend) -> None:
    await asyncio.to_thread(downgrade, backend.database_url, "base")
    assert await _tables(backend.database_url) <= {"alembic_version"}
    await asyncio.to_thread(upgrade, backend.database_url)
    assert set(Base.metadata.tables) <= await _tables(backend.database_url)
    # Upgrading an up-to-date database is a no-op.
    await asyncio.to_thread(upgrade, backend.database_url)
    assert await _diff(backend.database_url) == []
