"""The clock tests move: workers (prober, circuit, dispatcher, rotation scheduler) take a
``clock`` callable, so a test advances time instead of sleeping through it."""

from __future__ import annotations

from datetime import datetime, timedelta

from studio_integrations.core.clock import utcnow


class Clock:
    """UTC time that moves only when the test says; starts at ``now`` (default: the real
    now plus ``lead`` seconds)."""

    def __init__(self, now: datetime | None = None, *, lead: float = 0.0) -> None:
        self.lead = lead
        self.now = now if now is not None else utcnow() + timedelta(seconds=lead)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def catch_up(self) -> datetime:
        """Move to the real now plus the lead, if behind it: what the app stamped with the
        real time after this clock was made (a fan-out's delivery, a replay) is then due. A
        loaded machine can take seconds between the clock's making and those rows."""
        self.now = max(self.now, utcnow() + timedelta(seconds=self.lead))
        return self.now
