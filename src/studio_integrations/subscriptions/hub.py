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
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from studio_integrations.errors import StudioError
from studio_integrations.events.bus import EventBus
from studio_integrations.events.envelope import EventEnvelope

if TYPE_CHECKING:
    from studio_integrations.services import Services

log = logging.getLogger(__name__)

SLOW_CONSUMER = "SLOW_CONSUMER"


class SlowConsumer(StudioError):
    code = SLOW_CONSUMER


class _Closed:
    """Marks the end of a subscriber's stream (the hub is shutting down)."""


_CLOSED = _Closed()


@dataclass(eq=False)
class HubSubscriber:
    tenant_id: str
    queue_size: int
    queue: asyncio.Queue[EventEnvelope | _Closed] = field(init=False)
    dropped: bool = False
    high_water: int = 0  # the most events this subscriber's queue ever held

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)

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
        self._channels: dict[str, _Channel] = {}
        self._lock = asyncio.Lock()
        self.dropped = 0  # slow subscribers dropped so far
        self.delivered = 0
        bus.local_counter = self.subscribers

    # -- subscribing --------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, tenant_id: str) -> AsyncIterator[HubSubscriber]:
        """A subscriber of one tenant's events; the channel is open when this yields."""
        subscriber = HubSubscriber(tenant_id, self.queue_size)
        channel = await self._join(subscriber)
        try:
            await channel.ready.wait()
            yield subscriber
        finally:
            await self._leave(subscriber)

    async def _join(self, subscriber: HubSubscriber) -> _Channel:
        async with self._lock:
            channel = self._channels.get(subscriber.tenant_id)
            if channel is None or channel.reader is None or channel.reader.done():
                channel = _Channel()
                self._channels[subscriber.tenant_id] = channel
                channel.reader = asyncio.create_task(
                    self._read(subscriber.tenant_id, channel),
                    name=f"hub-{subscriber.tenant_id}",
                )
            channel.subscribers.add(subscriber)
            return channel

    async def _leave(self, subscriber: HubSubscriber) -> None:
        async with self._lock:
            channel = self._channels.get(subscriber.tenant_id)
            if channel is None:
                return
            channel.subscribers.discard(subscriber)
            if channel.subscribers:
                return
            del self._channels[subscriber.tenant_id]
            reader = channel.reader
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 3)

    async def _read(self, tenant_id: str, channel: _Channel) -> None:
        try:
            async with self._bus.subscribe(tenant_id) as envelopes:
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

    def subscribers(self, tenant_id: str) -> int:
        channel = self._channels.get(tenant_id)
        return len(channel.subscribers) if channel and channel.ready.is_set() else 0

    def cohorts(self) -> int:
        """Fan-out groups in this process (for metrics)."""
        return len(self._channels)

    def queue_sizes(self) -> list[int]:
        return [s.queue.qsize() for c in self._channels.values() for s in c.subscribers]

    def high_water(self) -> int:
        return max(
            (s.high_water for c in self._channels.values() for s in c.subscribers), default=0
        )

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
    services: Services, tenant_id: str
) -> AsyncIterator[AsyncIterator[EventEnvelope]]:
    """One tenant's events for a subscription resolver: through the hub (services started),
    else straight from the bus."""
    if services.hub is not None:
        async with services.hub.subscribe(tenant_id) as subscriber:
            yield subscriber.__aiter__()
    else:
        async with services.bus.subscribe(tenant_id) as envelopes:
            yield envelopes
