"""Text no store can keep: NUL (U+0000), which PostgreSQL holds in neither ``text`` nor
``jsonb``, and lone UTF-16 surrogates, which no UTF-8 encoder accepts. Found in any JSON-like
value (with the path of the first), or replaced for records of what arrived."""

from __future__ import annotations

import re
from typing import Any

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


def storable_text(text: str) -> str:
    """Text as received, with each NUL and lone surrogate replaced by U+FFFD (for records of
    what arrived)."""
    return _UNSTORABLE.sub("\ufffd", text)
