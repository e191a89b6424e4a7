"""Shared by every governed action: collect all input errors at once, and turn a unique
violation from a concurrent duplicate into the same userError a sequential one gets."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.errors import UserInputError, UserInputErrors


class ValidationErrors:
    """Collects every failure so the Studio form can mark all fields at once."""

    def __init__(self) -> None:
        self.items: list[UserInputError] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(UserInputError(message, field=field, code=code))

    def has(self, field: str) -> bool:
        return any(e.field == field for e in self.items)

    def raise_any(self) -> None:
        if len(self.items) == 1:
            raise self.items[0]
        if self.items:
            raise UserInputErrors(self.items)


async def flush_or_duplicate(session: AsyncSession, field: str, code: str, message: str) -> None:
    """A concurrent registration that won the race shows up as a unique violation here."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise UserInputError(message, field=field, code=code) from exc
