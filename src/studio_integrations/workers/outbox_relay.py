"""Publishes committed outbox rows to the bus, oldest first, and marks them published.

Delivery to the bus is at-least-once: a row is marked published only after the bus took it,
and a replica that dies mid-batch releases its row locks so another replica publishes the
rows again. Subscribers de-duplicate on the envelope id when they must.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.events.bus import BusUnavailable, EventBus
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import OutboxMessage
from studio_integrations.persistence.types import utcnow
from studio_integrations.telemetry.tracing import span

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Something else that must see every committed event, in the relay's transaction
    (e.g. the webhook fan-out enqueueing deliveries for matching subscriptions)."""

    async def __call__(self, session: AsyncSession, envelope: EventEnvelope) -> None: ...


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 100,
        max_backoff: float = 10.0,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self._db = db
        self._bus = bus
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._sinks = list(sinks)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        backoff = self._poll_seconds
        while True:
            try:
                count = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._poll_seconds
            if count < self._batch_size:
                await self._sleep(self._poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        self._wakeup.clear()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows were published. Raises when the bus
        refused one (after recording the attempt), so the caller backs off."""
        if not self._bus.connected:
            raise BusUnavailable("event bus is not connected")
        failure: Exception | None = None
        published = 0
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            rows = (
                await session.execute(
                    select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
            for row in rows:
                try:
                    await self._bus.publish(row.tenant_id, row.payload)
                    if self._sinks:
                        envelope = EventEnvelope.from_json(row.payload)
                        with span("outbox.fanout", trace_id=envelope.trace_id):
                            for sink in self._sinks:
                                await sink(session, envelope)
                except Exception as exc:
                    row.attempts += 1
                    row.last_error = str(exc)[:1000]
                    failure = exc
                    break
                row.published_at = utcnow()
                published += 1
        self.published += published
        if failure is not None:
            raise failure
        return published
