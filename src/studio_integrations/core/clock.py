"""The time source. Workers and time-dependent actions take a ``Clock`` (tests pass one they
move by hand, ``tests/support/clock.py``); the default is the wall clock in UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
