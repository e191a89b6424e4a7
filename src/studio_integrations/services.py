"""The per-process services the app wires together: database, bus, token verifier, relay."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from studio_integrations.auth.tokens import TokenVerifier, make_verifier
from studio_integrations.events.bus import EventBus
from studio_integrations.events.outbox import WAKE_KEY
from studio_integrations.persistence.db import Database
from studio_integrations.settings import Settings
from studio_integrations.workers.outbox_relay import OutboxRelay

log = logging.getLogger(__name__)
SHUTDOWN_STEP_SECONDS = 5.0


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: EventBus
    verifier: TokenVerifier
    relay: OutboxRelay

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.database_url)
        bus = EventBus(settings.broadcast_url, namespace=settings.bus_namespace)
        relay = OutboxRelay(db, bus, poll_seconds=settings.outbox_poll_seconds)
        return cls(settings=settings, db=db, bus=bus, verifier=make_verifier(settings), relay=relay)

    async def start(self) -> None:
        await self.bus.connect()
        self.db.session_info[WAKE_KEY] = self.relay.wake
        self.relay.start()

    async def stop(self) -> None:
        """Stop workers, then close connections. Each step is bounded: a stuck dependency
        must not keep the process from shutting down."""
        await self.relay.stop()
        steps = [self.bus.disconnect()]
        aclose = getattr(self.verifier, "aclose", None)
        if aclose is not None:
            steps.append(aclose())
        for step in steps:
            try:
                await asyncio.wait_for(step, SHUTDOWN_STEP_SECONDS)
            except Exception:
                log.warning("shutdown step did not finish cleanly", exc_info=True)
        await self.db.dispose()
