"""Shared by every governed action: collect all input errors at once, and turn a unique
violation from a concurrent duplicate into the same userError a sequential one gets; find the
NUL characters (U+0000) that PostgreSQL can store in neither ``text`` nor ``jsonb``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.errors import UserInputError, UserInputErrors


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


def find_nul(value: Any, path: str) -> str | None:
    """The path of the first string (or object key) holding U+0000 in a JSON-like value."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return f"{path} (a key)"
            found = find_nul(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_nul(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def storable_text(text: str) -> str:
    """Text as received, with each NUL replaced by U+FFFD (for records of what arrived)."""
    return text.replace("\x00", "\ufffd")
