"""The per-process fan-out hub: one bus subscription per tenant channel, a bounded queue per
subscriber.

broadcaster gives each of its subscribers an unbounded queue, so a WebSocket client that
stops reading (its socket buffers full, its send blocked) would make the server hold every
later event for it, without limit. Here the process subscribes to a tenant's channel once
(the first local subscriber opens it, the last one closes it), parses each envelope once, and
offers it to every subscriber's queue of ``queue_size`` events without waiting. A subscriber
whose queue is full is dropped on the spot: its queue is emptied (memory is released at
once), and its stream ends with a ``SlowConsumer`` error (``extensions.code``
``SLOW_CONSUMER``), after which graphql-transport-ws sends ``complete``; the client may
subscribe again. Other subscribers never wait for a slow one.

Redis outages are the bus's business (``events.bus.ResilientRedisBackend`` reconnects and
re-subscribes; the outbox replays what was emitted meanwhile): the hub's channel
subscription and its subscribers survive them untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from studio_integrations.core.errors import StudioError
from studio_integrations.events.bus import EventBus
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.events.replay import check_cursor, events_after

if TYPE_CHECKING:
    from studio_integrations.services import Services
    from studio_integrations.subscriptions.cohorts import Cohort

log = logging.getLogger(__name__)

SLOW_CONSUMER = "SLOW_CONSUMER"


class SlowConsumer(StudioError):
    code = SLOW_CONSUMER


class _Closed:
    """Marks the end of a subscriber's stream (the hub is shutting down)."""


_CLOSED = _Closed()

# Set in a cohort's task (``subscriptions.cohorts``): the hub subscriber its resolver opens
# stands for all the cohort's members, which is what ``FanoutHub.subscribers`` counts.
COHORT_MEMBERS: contextvars.ContextVar[Callable[[], int] | None] = contextvars.ContextVar(
    "cohort_members", default=None
)


@dataclass(eq=False)
class HubSubscriber:
    tenant_id: str
    queue_size: int
    bus: EventBus
    queue: asyncio.Queue[EventEnvelope | _Closed] = field(init=False)
    dropped: bool = False
    high_water: int = 0  # the most events this subscriber's queue ever held
    members: Callable[[], int] | None = None  # a cohort's: how many subscriptions it serves

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)

    @property
    def weight(self) -> int:
        return 1 if self.members is None else self.members()

    def offer(self, envelope: EventEnvelope) -> bool:
        """Queue without waiting; False (and dropped) when the subscriber is too far behind."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(envelope)
        except asyncio.QueueFull:
            self._drop()
            return False
        self.high_water = max(self.high_water, self.queue.qsize())
        return True

    def _drop(self) -> None:
        self.dropped = True
        while not self.queue.empty():  # release the backlog now, not when the client reads
            self.queue.get_nowait()
        self.queue.put_nowait(_CLOSED)

    def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[EventEnvelope]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _Closed):
                if self.dropped:
                    raise SlowConsumer(
                        f"this subscription fell more than {self.queue_size} events behind "
                        "and was dropped; subscribe again to resume"
                    )
                return
            yield item


@dataclass(eq=False)
class _Channel:
    subscribers: set[HubSubscriber] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class FanoutHub:
    def __init__(self, bus: EventBus, *, queue_size: int = 256) -> None:
        self._bus = bus
        self.queue_size = queue_size
        self._channels: dict[tuple[EventBus, str], _Channel] = {}
        self._lock = asyncio.Lock()
        self.dropped = 0  # slow subscribers dropped so far
        self.delivered = 0
        # Cohorts by key (``subscriptions.cohorts``); their members' backlogs count too.
        self.cohorts: dict[Hashable, Cohort] = {}

    # -- subscribing --------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, tenant_id: str, *, bus: EventBus | None = None
    ) -> AsyncIterator[HubSubscriber]:
        """A subscriber of one tenant's events (of the main bus, or of another one such as the
        webhook delivery feed's); the channel is open when this yields."""
        bus = bus or self._bus
        members = COHORT_MEMBERS.get()
        subscriber = HubSubscriber(tenant_id, self.queue_size, bus, members=members)
        channel = await self._join(subscriber)
        try:
            await channel.ready.wait()
            yield subscriber
        finally:
            await self._leave(subscriber)

    async def _join(self, subscriber: HubSubscriber) -> _Channel:
        async with self._lock:
            key = (subscriber.bus, subscriber.tenant_id)
            channel = self._channels.get(key)
            if channel is None or channel.reader is None or channel.reader.done():
                channel = _Channel()
                self._channels[key] = channel
                channel.reader = asyncio.create_task(
                    self._read(subscriber.bus, subscriber.tenant_id, channel),
                    name=f"hub-{subscriber.tenant_id}",
                )
            channel.subscribers.add(subscriber)
            return channel

    async def _leave(self, subscriber: HubSubscriber) -> None:
        async with self._lock:
            key = (subscriber.bus, subscriber.tenant_id)
            channel = self._channels.get(key)
            if channel is None:
                return
            channel.subscribers.discard(subscriber)
            if channel.subscribers:
                return
            del self._channels[key]
            reader = channel.reader
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 3)

    async def _read(self, bus: EventBus, tenant_id: str, channel: _Channel) -> None:
        try:
            async with bus.subscribe(tenant_id) as envelopes:
                channel.ready.set()
                async for envelope in envelopes:
                    self._fan_out(channel, envelope)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("hub: reading tenant %s's channel failed", tenant_id)
        finally:
            channel.ready.set()  # never leave a subscriber waiting on a dead channel
            for subscriber in list(channel.subscribers):
                subscriber.close()

    def _fan_out(self, channel: _Channel, envelope: EventEnvelope) -> None:
        for subscriber in list(channel.subscribers):
            if subscriber.offer(envelope):
                self.delivered += 1
            elif subscriber.dropped and subscriber in channel.subscribers:
                channel.subscribers.discard(subscriber)
                self.dropped += 1
                log.info("hub: dropped a slow subscriber of tenant %s", envelope.tenant_id)

    # -- introspection (metrics and tests) ----------------------------------------------------

    def subscribers(self, tenant_id: str, *, bus: EventBus | None = None) -> int:
        channel = self._channels.get((bus or self._bus, tenant_id))
        if channel is None or not channel.ready.is_set():
            return 0
        return sum(s.weight for s in channel.subscribers)

    def live_subscriptions(self) -> int:
        """Live subscriptions in this process: a cohort counts its members (for metrics)."""
        return sum(s.weight for c in self._channels.values() for s in c.subscribers)

    def cohort_count(self) -> int:
        """Cohorts (identical subscriptions sharing one execution) in this process (metrics)."""
        return len(self.cohorts)

    def queue_sizes(self) -> list[int]:
        hub = [s.queue.qsize() for c in self._channels.values() for s in c.subscribers]
        return hub + [m.pending for c in self.cohorts.values() for m in c.members]

    def high_water(self) -> int:
        hub = (s.high_water for c in self._channels.values() for s in c.subscribers)
        members = (m.high_water for c in self.cohorts.values() for m in c.members)
        return max((*hub, *members), default=0)

    async def close(self) -> None:
        async with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            if channel.reader is not None:
                channel.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(channel.reader, 3)


@asynccontextmanager
async def tenant_events(
    services: Services, tenant_id: str, *, bus: EventBus | None = None
) -> AsyncIterator[AsyncIterator[EventEnvelope]]:
    """One tenant's events (of ``bus``, by default the services' own) for a subscription
    resolver: through the hub (services started), else straight from the bus."""
    if services.hub is not None:
        async with services.hub.subscribe(tenant_id, bus=bus) as subscriber:
            yield subscriber.__aiter__()
    else:
        async with (bus or services.bus).subscribe(tenant_id) as envelopes:
            yield envelopes


@asynccontextmanager
async def resumable_events(
    services: Services, tenant_id: str, after: str | None
) -> AsyncIterator[AsyncIterator[EventEnvelope]]:
    """One tenant's events; with ``after`` (a pushed event's cursor) first every event
    committed after it, in commit order, then the live ones, with no gap and no duplicate.

    The live subscription is in place before the replay reads the database, so an event
    is either read by the replay or arrives live (or both: live events at or before the last
    replayed sequence are skipped). The cursor is checked before anything is opened."""
    if after is None:
        async with tenant_events(services, tenant_id) as live:
            yield live
        return
    last = await check_cursor(services.db, tenant_id, after)
    async with tenant_events(services, tenant_id) as live:

        async def replay_then_live() -> AsyncIterator[EventEnvelope]:
            nonlocal last
            async for envelope in events_after(services.db, tenant_id, last):
                last = envelope.sequence or last
                yield envelope
            async for envelope in live:
                if envelope.sequence is not None and envelope.sequence <= last:
                    continue
                yield envelope

        yield replay_then_live()
