"""The CLI, run as a user runs it: a subprocess with STUDIO_* settings in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.auth.tokens import DevTokenVerifier
from studio_integrations.settings import Settings
from tests.support.backends import (
    PG_ADMIN_DSN,
    PostgresTemplate,
    port_open,
    sqlalchemy_url,
    unavailable,
    with_database,
)

ROOT = Path(__file__).resolve().parents[1]


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "studio_integrations.cli", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "STUDIO_STATE_DIR": str(tmp_path / "state"),
        "STUDIO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
    }


async def test_token_prints_a_bare_token_the_server_accepts(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = cli("token", "--tenant", "acme", "--scopes", "all", "--subject", "alice", env=env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.count(".") == 2
    assert "\n" not in token
    principal = await DevTokenVerifier(Settings(state_dir=tmp_path / "state")).verify(token)
    assert (principal.subject, principal.tenant_id, principal.scopes) == (
        "alice",
        "acme",
        ALL_SCOPES,
    )


def test_token_refuses_unknown_scopes(env: dict[str, str]) -> None:
    done = cli("token", "--tenant", "acme", "--scopes", "root:all", "--subject", "a", env=env)
    assert done.returncode == 2
    assert "unknown scope" in done.stderr
    assert done.stdout == ""


def test_schema_graphql_is_current(env: dict[str, str]) -> None:
    done = cli("export-schema", env=env)
    assert done.returncode == 0, done.stderr
    committed = (ROOT / "schema.graphql").read_text()
    assert done.stdout == committed, "schema.graphql is stale: run `make schema` and commit it"


def test_migrate_and_secret_set_on_sqlite(env: dict[str, str]) -> None:
    assert cli("migrate", env=env).returncode == 0
    assert cli("migrate", env=env).returncode == 0  # idempotent
    done = cli("secret", "set", "deputy-api-key", env=env, stdin="s3cr3t-value\n")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())
    assert lines["reference"] == "local://vault/secrets/deputy-api-key"
    assert len(lines["version"]) == 32
    assert lines["id"] == f"{lines['reference']}/{lines['version']}"
    assert "s3cr3t-value" not in done.stdout + done.stderr
    second = cli("secret", "set", "deputy-api-key", env=env, stdin="rotated")
    assert second.returncode == 0
    assert second.stdout != done.stdout  # a new version, not an overwrite


def test_secret_set_rejects_bad_input(env: dict[str, str]) -> None:
    assert cli("migrate", env=env).returncode == 0
    empty = cli("secret", "set", "name", env=env, stdin="")
    assert empty.returncode == 2
    assert "no secret value" in empty.stderr
    bad_name = cli("secret", "set", "bad_name!", env=env, stdin="v")
    assert bad_name.returncode == 2
    assert "letters, digits or dashes" in bad_name.stderr


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    if not port_open(PG_ADMIN_DSN, 5432):
        unavailable("PostgreSQL at 127.0.0.1:5432")
    name = f"studio_cli_{uuid.uuid4().hex[:10]}"
    await PostgresTemplate.admin(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(with_database(PG_ADMIN_DSN, name))
    finally:
        await PostgresTemplate.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migrate_against_postgresql(empty_postgres: str, tmp_path: Path) -> None:
    """`studio-integrations migrate` with a postgresql+asyncpg URL, on an empty database."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    env = {"STUDIO_DATABASE_URL": empty_postgres, "STUDIO_STATE_DIR": str(tmp_path)}
    done = cli("migrate", env=env)
    assert done.returncode == 0, done.stderr
    engine = create_async_engine(empty_postgres)
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        tables = (
            await conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        ).scalar_one()
    await engine.dispose()
    assert version
    assert tables >= 16
