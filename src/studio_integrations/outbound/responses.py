"""Reading what a provider or a webhook receiver answered: a body read up to a cap, and the
wait its ``Retry-After`` asks for."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a streamed body (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (delay-seconds or an HTTP date; a date
    without a zone is UTC); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
