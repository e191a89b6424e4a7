"""Counting rows across tenants: how tests prove a refused action wrote nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from studio_integrations.persistence.db import Database, TenantScope


async def row_counts(db: Database, **models: Any) -> dict[str, int]:
    """``row_counts(db, providers=Provider, …)`` -> ``{"providers": 3, …}``, in one
    statement (one round trip, however many tables)."""
    counts = [
        select(func.count()).select_from(model).scalar_subquery() for model in models.values()
    ]
    async with db.session(TenantScope.system_scope()) as session:
        row = (await session.execute(select(*counts))).one()
    return {name: int(count) for name, count in zip(models, row, strict=True)}
