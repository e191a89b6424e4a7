"""The clock tests move: workers (prober, circuit, dispatcher, rotation scheduler) take a
``clock`` callable, so a test advances time instead of sleeping through it."""

from __future__ import annotations

from datetime import datetime, timedelta

from studio_integrations.core.clock import utcnow


class Clock:
    """UTC time that moves only when the test says; starts at ``now`` (default: the real
    now plus ``lead`` seconds)."""

    def __init__(self, now: datetime | None = None, *, lead: float = 0.0) -> None:
        self.now = now if now is not None else utcnow() + timedelta(seconds=lead)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
