"""Counting rows across tenants: how tests prove a refused action wrote nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from studio_integrations.persistence.db import Database, TenantScope


async def row_counts(db: Database, **models: Any) -> dict[str, int]:
    """``row_counts(db, providers=Provider, …)`` -> ``{"providers": 3, …}``, in one session."""
    async with db.session(TenantScope.system_scope()) as session:
        return {
            name: int((await session.execute(select(func.count()).select_from(model))).scalar())
            for name, model in models.items()
        }
