"""The suite's PostgreSQL databases are recycled (tests/support/backends.py): a test must
never see what an earlier test left behind, under the same name or another."""

from __future__ import annotations

import asyncpg
import pytest

from studio_integrations.persistence.models import Base
from tests.support.backends import PG_ADMIN_DSN, PostgresTemplate, unavailable, with_database


@pytest.fixture
def template(postgres_template: PostgresTemplate | None) -> PostgresTemplate:
    if postgres_template is None:
        unavailable("PostgreSQL at 127.0.0.1:5432")
    assert postgres_template is not None
    return postgres_template


async def _connect(name: str) -> asyncpg.Connection:
    return await asyncpg.connect(with_database(PG_ADMIN_DSN, name))


async def _exists(name: str) -> bool:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def _rows(name: str) -> dict[str, int]:
    conn = await _connect(name)
    try:
        return {
            t.name: await conn.fetchval(f'SELECT count(*) FROM "{t.name}"')  # noqa: S608
            for t in Base.metadata.sorted_tables
        }
    finally:
        await conn.close()


async def test_a_released_database_comes_back_empty_under_a_new_name(
    template: PostgresTemplate,
) -> None:
    first, _ = await template.fresh()
    conn = await _connect(first)
    await conn.execute(
        "INSERT INTO idempotency_keys (tenant_id, subject, key, request_hash, created_at,"
        " expires_at) VALUES ('acme', 'alice', 'k', 'h', now(), now())"
    )
    await conn.close()
    await template.release(first)

    second, _ = await template.fresh()
    try:
        assert second != first
        assert not await _exists(first)
        assert set((await _rows(second)).values()) == {0}
        assert await template._fingerprint(second) == template.fingerprint
    finally:
        await template.release(second)


async def test_a_database_with_another_schema_is_dropped_not_reused(
    template: PostgresTemplate,
) -> None:
    name, _ = await template.fresh()
    conn = await _connect(name)
    await conn.execute("ALTER TABLE providers ADD COLUMN leftover text")
    await conn.close()
    await template.release(name)
    assert not await _exists(name)
    assert name not in template._idle


async def test_a_database_someone_is_still_connected_to_is_dropped_not_reused(
    template: PostgresTemplate,
) -> None:
    name, _ = await template.fresh()
    lingering = await _connect(name)
    try:
        await template.release(name)
        assert not await _exists(name)
        assert name not in template._idle
    finally:
        await lingering.close()
