"""Publishes committed outbox rows to the bus, oldest first, and marks them published.

Three short steps, and no transaction is open while the bus is spoken to (a slow or dead
Redis must not hold row locks or a pooled connection):

1. claim: one transaction picks unpublished rows whose lease is free (``FOR UPDATE SKIP
   LOCKED``), stamps ``lease_until`` so other replicas skip them, and gives each event its
   ``sequence`` (``audit_events.sequence``) if it has none. Sequences are handed out under a
   lock held until the claim commits (``pg_advisory_xact_lock`` on PostgreSQL; SQLite
   serialises writers), so sequence order is commit order: a resumable subscription that
   replays ``sequence > cursor`` can never miss an event committed later with a lower number.
2. publish the claimed events (with their sequences) to their tenants' channels, in one round
   trip to the bus (``EventBus.publish_many``).
3. record: one transaction marks the published rows (still unpublished: a replica whose lease
   ran out may have done it already) and runs the sinks for them, so a sink sees each event
   once; a refused publication counts an attempt and frees the lease for the next try.

Delivery to the bus is at-least-once: a replica that dies between 2 and 3 leaves a lease
that expires, and the rows are published again (with the same sequence; subscribers that
resume de-duplicate on it). When the bus comes back after an outage it wakes the relay
(``EventBus.on_reconnect``): no back-off is left to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Protocol

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import utcnow
from studio_integrations.events.bus import BusUnavailable, EventBus
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import AuditEvent, OutboxMessage
from studio_integrations.telemetry.tracing import span

log = logging.getLogger(__name__)

# How long a claimed batch is this relay's to publish before other replicas may take it.
LEASE = timedelta(seconds=30)
# The transaction-scoped advisory lock that serialises sequence assignment on PostgreSQL.
SEQUENCE_LOCK = 0x5_7D10_0014


class EventSink(Protocol):
    """Something else that must see every committed event, in the relay's transaction
    (e.g. the webhook fan-out enqueueing deliveries for matching subscriptions). It is given
    each published batch at once, in publishing order, so it can do its work for the batch
    in a few statements instead of a few per event."""

    async def __call__(self, session: AsyncSession, envelopes: Sequence[EventEnvelope]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Claimed:
    row_id: str
    envelope: EventEnvelope  # with its sequence


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
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._bus.on_reconnect(self.wake)
        self._task = asyncio.create_task(self.run(), name="outbox-relay")
        self._listener = asyncio.create_task(self._listen(), name="outbox-relay-wakes")

    async def _listen(self) -> None:
        """Wake on other replicas' ``EventBus.wake_relays`` (their commits cannot call
        ``wake``); the poll still covers a wake lost while the bus was down."""
        while not self._stopping:
            try:
                async with self._bus.wakes() as wakes:
                    async for _ in wakes:
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("outbox relay: wake listener restarting", exc_info=True)
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Stop after the batch in hand: the loop is woken and leaves at its next turn. Not
        cancelled mid-batch: a cancellation inside an SQLite statement (waiting on the write
        lock) made SQLAlchemy close the connection while the clean-up still needed it, and the
        task never finished (a test's event loop could not close). ``Services.stop`` cancels
        it only if it has not stopped by the shutdown deadline."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        listener = self._listener
        if listener is not None:
            listener.cancel()  # it only waits on the bus's queue: safe to cancel
            await asyncio.wait([listener], timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def run(self) -> None:
        backoff = self._poll_seconds
        while not self._stopping:
            try:
                count = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A publish refused while the bus reports itself connected (a pooled
                # connection from before a Redis restart) is retried within a second, not
                # after the back-off meant for an outage.
                delay = min(backoff, 1.0) if self._bus.connected else backoff
                log.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                await self._sleep(delay)
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
        claimed = await self._claim()
        published: list[_Claimed] = []
        failure: Exception | None = None
        # Checked again after the claim, not only before it: the bus can drop while the claim
        # waits on the database, and a publish on a fresh connection before this process's
        # subscriptions are back would reach none of them.
        if claimed and not self._bus.connected:
            failure = BusUnavailable("event bus is not connected")
        elif claimed:
            try:
                # One round trip for the batch, in order (``EventBus.publish_many``).
                await self._bus.publish_many(
                    [(item.envelope.tenant_id, item.envelope.to_bus_json()) for item in claimed]
                )
                published = claimed
            except Exception as exc:
                failure = exc
        if claimed:
            await self._record(published, claimed[len(published) :], failure)
        self.published += len(published)
        if failure is not None:
            raise failure
        return len(published)

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            if self._db.dialect == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEQUENCE_LOCK}
                )
            rows = list(
                (
                    await session.execute(
                        select(OutboxMessage)
                        .where(
                            OutboxMessage.published_at.is_(None),
                            or_(
                                OutboxMessage.lease_until.is_(None),
                                OutboxMessage.lease_until < now,
                            ),
                        )
                        .order_by(OutboxMessage.id)
                        .limit(self._batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            if not rows:
                return []
            events = {
                e.id: e
                for e in (
                    await session.execute(
                        select(AuditEvent).where(AuditEvent.id.in_([r.event_id for r in rows]))
                    )
                ).scalars()
            }
            top = (await session.execute(select(func.max(AuditEvent.sequence)))).scalar()
            top = top or 0
            claimed = []
            for row in rows:
                row.lease_until = now + LEASE
                event = events.get(row.event_id)
                if event is not None and event.sequence is None:
                    top += 1
                    event.sequence = top
                sequence = event.sequence if event is not None else None
                envelope = replace(EventEnvelope.from_json(row.payload), sequence=sequence)
                claimed.append(_Claimed(row.id, envelope))
        return claimed

    async def _record(
        self, published: list[_Claimed], refused: list[_Claimed], failure: Exception | None
    ) -> None:
        ids = [item.row_id for item in published]
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            if ids:
                rows = (
                    await session.execute(
                        select(OutboxMessage)
                        .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
                        .order_by(OutboxMessage.id)
                        .with_for_update()
                    )
                ).scalars()
                envelopes = {item.row_id: item.envelope for item in published}
                now = utcnow()
                batch = []
                for row in rows:
                    batch.append(replace(envelopes[row.id], sequence=None))
                    row.published_at = now
                    row.lease_until = None
                if batch:
                    with span("outbox.fanout", {"studio.events": len(batch)}):
                        for sink in self._sinks:
                            await sink(session, batch)
            if refused:
                first = await session.get(OutboxMessage, refused[0].row_id)
                if first is not None:
                    first.attempts += 1
                    first.last_error = str(failure)[:1000]
                for item in refused:
                    left = await session.get(OutboxMessage, item.row_id)
                    if left is not None and left.published_at is None:
                        left.lease_until = None
