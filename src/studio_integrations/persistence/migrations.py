"""Alembic, configured in code: ``studio-integrations migrate`` and the tests use this.

The same migration scripts run on SQLite (aiosqlite; batch mode for ALTERs) and PostgreSQL
(asyncpg).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).parent / "alembic"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations. Synchronous (Alembic drives its own event loop for async drivers);
    from async code call it with ``asyncio.to_thread``."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
