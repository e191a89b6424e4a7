"""Shared by every governed action: collect all input errors at once, and turn a unique
violation from a concurrent duplicate into the same userError a sequential one gets; find the
NUL characters (U+0000) that PostgreSQL can store in neither ``text`` nor ``jsonb``."""

from __future__ import annotations

import re
from typing import Any

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


_NUL = re.compile("\x00")
# A UTF-16 surrogate code point on its own (JSON's "\ud800"): not text, and neither UTF-8
# encoders (responses, SQLite, asyncpg) nor PostgreSQL's jsonb accept it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _find(value: Any, path: str, pattern: re.Pattern[str]) -> str | None:
    """The path of the first string (or object key) ``pattern`` finds, depth first; an
    explicit stack, so no input nests deep enough to exhaust the interpreter's."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return where
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if pattern.search(str(key)):
                    return f"{where} (a key)"
                children.append((child, f"{where}.{key}"))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(c, f"{where}[{i}]") for i, c in enumerate(item)]))
    return None


def find_nul(value: Any, path: str) -> str | None:
    """The path of the first string (or object key) holding U+0000 in a JSON-like value."""
    return _find(value, path, _NUL)


def find_lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string (or object key) holding a lone UTF-16 surrogate."""
    return _find(value, path, _LONE_SURROGATE)


def has_lone_surrogate(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def storable_text(text: str) -> str:
    """Text as received, with each NUL and lone surrogate replaced by U+FFFD (for records of
    what arrived)."""
    return _UNSTORABLE.sub("\ufffd", text)
