"""Database + bus back ends for tests: a fresh database per test.

Each back end migrates a template once per test session (the real Alembic migrations), and
every test gets a database equal to it: a file copy for SQLite; on PostgreSQL a copy
(``CREATE DATABASE … TEMPLATE``) that is recycled after the test instead of dropped. On
PostgreSQL 15 every ``DROP DATABASE`` forces an immediate checkpoint of the whole cluster,
which under a loaded suite cost 1-3 s per test (and slowed every commit of the tests running
beside it); creating a copy writes the template's catalog through the WAL (0.3-0.5 s).
A released database is reused only when it is provably back to the template's state: no
other session is connected to it, its schema (tables, columns, constraints, indexes,
migration version) has the template's fingerprint, and every row of every table is deleted;
it then gets a new name, so no two tests ever see the same database URL. Anything else is
dropped as before. PostgreSQL and Redis tests fail, not skip, when ``CI`` is set and the
service is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from studio_integrations.persistence.migrations import upgrade
from studio_integrations.persistence.models import Base

IN_CI = bool(os.environ.get("CI"))
PG_ADMIN_DSN = os.environ.get("STUDIO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STUDIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if IN_CI:
        pytest.fail(f"{message}, and CI requires it (.ci/run starts it)", pytrace=False)
    pytest.skip(message)


def port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port nothing listens on now (for a server a test or bench starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return parts._replace(path=f"/{name}").geturl()


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broadcast_url: str


class SqliteTemplate:
    def __init__(self, root: Path) -> None:
        self.path = root / "template.db"
        upgrade(f"sqlite+aiosqlite:///{self.path}")

    def fresh(self, directory: Path) -> str:
        target = directory / "studio.db"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"


# The schema of a database, as one hash: a recycled database must still match the template's
# (a test may migrate down and up again, or fail half-way through doing so).
FINGERPRINT = """
SELECT md5(string_agg(item, ',' ORDER BY item)) FROM (
  SELECT 'c:' || table_name || '.' || column_name || ':' || data_type || ':'
         || coalesce(column_default, '') || ':' || is_nullable AS item
    FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL
  SELECT 'k:' || conrelid::regclass::text || ':' || conname || ':' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'i:' || indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL
  SELECT 'r:' || relname || ':' || relkind::text FROM pg_class
    WHERE relnamespace = 'public'::regnamespace AND relkind NOT IN ('i', 'I')
  UNION ALL
  SELECT 'v:' || version_num FROM alembic_version
) AS schema_items
"""
OTHER_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
# Children before parents, so no foreign key refuses a delete.
DELETE_ALL = "".join(
    f'DELETE FROM "{t.name}";'  # noqa: S608 (table names from the models)
    for t in reversed(Base.metadata.sorted_tables)
)


class PostgresTemplate:
    def __init__(self) -> None:
        self.name = f"studio_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(self.admin(f'CREATE DATABASE "{self.name}"'))
        try:
            upgrade(sqlalchemy_url(with_database(PG_ADMIN_DSN, self.name)))
            self.fingerprint = asyncio.run(self._fingerprint(self.name))
        except BaseException:
            asyncio.run(self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            raise
        self._idle: list[str] = []  # released databases, back to the template's state

    @staticmethod
    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    @staticmethod
    async def _fingerprint(name: str) -> str:
        conn = await asyncpg.connect(with_database(PG_ADMIN_DSN, name))
        try:
            return str(await conn.fetchval(FINGERPRINT))
        finally:
            await conn.close()

    async def fresh(self) -> tuple[str, str]:
        name = f"studio_test_{uuid.uuid4().hex[:12]}"
        while self._idle:
            idle = self._idle.pop()
            try:
                await self.admin(f'ALTER DATABASE "{idle}" RENAME TO "{name}"')
            except asyncpg.PostgresError:
                await self.drop(idle)  # someone connected to it after all: not reused
                continue
            return name, sqlalchemy_url(with_database(PG_ADMIN_DSN, name))
        await self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        return name, sqlalchemy_url(with_database(PG_ADMIN_DSN, name))

    async def release(self, name: str) -> None:
        """Give a test's database back: emptied for reuse when it is provably in the
        template's state, dropped otherwise."""
        if await self._reset(name):
            self._idle.append(name)
        else:
            await self.drop(name)

    async def _reset(self, name: str) -> bool:
        try:
            conn = await asyncpg.connect(with_database(PG_ADMIN_DSN, name))
        except (OSError, asyncpg.PostgresError):
            return False
        try:
            # A closed connection's server process can take a moment to leave; one that
            # stays outlived its test and might write after the reset.
            for _ in range(25):
                if not await conn.fetchval(OTHER_SESSIONS):
                    break
                await asyncio.sleep(0.02)
            else:
                return False
            if await conn.fetchval(FINGERPRINT) != self.fingerprint:
                return False
            await conn.execute(DELETE_ALL)  # one implicit transaction
            return True
        except asyncpg.PostgresError:
            return False
        finally:
            await conn.close()

    async def drop(self, name: str) -> None:
        await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        names = [*self._idle, self.name]
        self._idle.clear()
        asyncio.run(self.admin(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names)))
