"""Demo data for ``make run``: what a new operator sees on first start.

Idempotent: running it again changes nothing that is already there. Each area adds its own
seeder to ``SEEDERS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from studio_integrations.domain.catalogue import load_catalogue
from studio_integrations.persistence.db import Database
from studio_integrations.settings import Settings

Seeder = Callable[[Database, Settings, str], Awaitable[list[str]]]


async def seed_catalogue(db: Database, _settings: Settings, _tenant_id: str) -> list[str]:
    """The global provider catalogue first: the other areas' demo data refers to it."""
    return [(await load_catalogue(db)).summary()]


SEEDERS: list[Seeder] = [seed_catalogue]


async def seed_demo(db: Database, settings: Settings, *, tenant_id: str) -> list[str]:
    lines: list[str] = []
    for seeder in SEEDERS:
        lines.extend(await seeder(db, settings, tenant_id))
    return lines or ["demo data: nothing to seed"]
