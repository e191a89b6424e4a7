"""Database + bus back ends for tests: a fresh database per test, dropped afterwards.

Each back end migrates a template once per test session (the real Alembic migrations), and
every test gets a copy: a file copy for SQLite, ``CREATE DATABASE … TEMPLATE`` for
PostgreSQL. PostgreSQL and Redis tests fail, not skip, when ``CI`` is set and the service is
missing.
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


class PostgresTemplate:
    def __init__(self) -> None:
        self.name = f"studio_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(self.admin(f'CREATE DATABASE "{self.name}"'))
        upgrade(sqlalchemy_url(with_database(PG_ADMIN_DSN, self.name)))

    @staticmethod
    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def fresh(self) -> tuple[str, str]:
        name = f"studio_test_{uuid.uuid4().hex[:12]}"
        await self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        return name, sqlalchemy_url(with_database(PG_ADMIN_DSN, name))

    async def drop(self, name: str) -> None:
        await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        asyncio.run(self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
