"""Read-only sessions: on SQLite they do not take the write lock, and nothing writes through
them on either back end."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from studio_integrations.core.enums import AuthMode, RotationStrategy
from studio_integrations.persistence.db import Database, ReadOnlySessionError, TenantScope
from studio_integrations.persistence.models import Credential
from studio_integrations.services import Services
from tests.support.backends import SqliteTemplate

ACME = TenantScope.of("acme")


def _credential(name: str) -> Credential:
    return Credential(
        key_vault_ref=f"local://vault/secrets/{name}",
        auth_mode=AuthMode.API_KEY,
        current_version="v1",
        rotation_strategy=RotationStrategy.EXTERNAL,
    )


async def test_sqlite_reader_reads_its_snapshot_while_a_writer_holds_the_lock(
    tmp_path: Path, sqlite_template: SqliteTemplate
) -> None:
    db = Database(sqlite_template.fresh(tmp_path))
    try:
        async with db.transaction(ACME) as writer:
            writer.add(_credential("first"))
        async with db.transaction(ACME) as writer:
            writer.add(_credential("second"))
            await writer.flush()  # the write lock is held (BEGIN IMMEDIATE) until commit
            # A reader that took the lock too would wait out the 30 s busy timeout and fail.
            async with db.read_session(ACME) as reader:
                refs = (await reader.execute(select(Credential.key_vault_ref))).scalars().all()
        assert refs == ["local://vault/secrets/first"]  # the committed snapshot only
    finally:
        await db.dispose()


async def test_writes_through_a_read_session_are_refused(services: Services) -> None:
    db = services.db
    async with db.transaction(ACME) as writer:
        writer.add(_credential("kept"))
    async with db.read_session(ACME) as reader:
        reader.add(_credential("sneaked"))
        with pytest.raises(ReadOnlySessionError):
            await reader.flush()
    async with db.read_session(ACME) as reader:
        with pytest.raises(ReadOnlySessionError):
            await reader.execute(update(Credential).values(current_version="v2"))
    async with db.read_session(ACME) as reader:
        rows = (await reader.execute(select(Credential))).scalars().all()
    assert [(c.key_vault_ref, c.current_version) for c in rows] == [
        ("local://vault/secrets/kept", "v1")
    ]


async def test_the_request_session_reads_what_was_written_after_its_snapshot(
    services: Services,
) -> None:
    """A request's shared read session (one snapshot for the whole request) starts a new
    snapshot once a transaction has finished since — a second mutation's payload must see
    that mutation's rows."""
    from starlette.requests import Request

    from studio_integrations.auth.principal import Principal
    from studio_integrations.auth.scopes import ALL_SCOPES
    from studio_integrations.schema.context import StudioContext

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/graphql"})
    context = StudioContext(
        request=request,
        response=None,
        services=services,
        trace_id="t",
        principal=Principal(subject="alice", tenant_id="acme", scopes=ALL_SCOPES),
    )
    try:
        async with context.read() as session:
            assert (await session.execute(select(Credential))).scalars().all() == []
        async with services.db.transaction(ACME) as writer:
            writer.add(_credential("written"))
        async with context.read() as session:
            refs = (await session.execute(select(Credential.key_vault_ref))).scalars().all()
        assert refs == ["local://vault/secrets/written"]
    finally:
        await context.close()
