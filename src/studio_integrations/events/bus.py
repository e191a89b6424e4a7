"""The event bus: broadcaster channels, one per tenant.

``memory://`` uses broadcaster's in-process backend. ``redis://`` uses
``ResilientRedisBackend``: broadcaster's own Redis backend lets its listener die on the first
connection error and never reconnects (encode/broadcaster#144), which would leave every
subscriber of this process hanging after a Redis restart. Ours reconnects with back-off and
re-subscribes, retrying at most every second (``max_backoff``) so it is back within a second
or two of Redis answering. Publishing raises while Redis is down; the outbox relay retries,
and is woken the moment the bus is back (``on_reconnect``), so nothing is lost or late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis
from broadcaster import Broadcast, Event
from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.events.outbox import tenant_channel

log = logging.getLogger(__name__)

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# Keeps the subscription connection in subscribed mode even when no tenant is subscribed.
_HEARTBEAT = "studio.bus.heartbeat"
# How long a (re)connecting subscription waits for Redis to confirm it.
CONFIRM_SECONDS = 5.0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class BusUnavailable(Exception):
    """The bus could not take a message; the outbox keeps it for the next try."""


class ResilientRedisBackend(BroadcastBackend):
    def __init__(self, url: str, *, max_backoff: float = 1.0) -> None:
        self._url = url
        self._max_backoff = max_backoff
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.on_connected: list[Callable[[], None]] = []  # called each time it is (re)connected
        self.reconnects = 0
        self._closing = False
        # channel -> resolved when Redis confirms its SUBSCRIBE (``subscribe`` waits on it)
        self._confirming: dict[str, asyncio.Future[None]] = {}

    async def connect(self) -> None:
        self._client = aioredis.Redis.from_url(
            self._url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5
        )
        self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")

    async def disconnect(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            # redis-py can absorb a cancellation inside a pub/sub read; the reader also checks
            # ``_closing``, and shutdown never waits more than a few seconds for it.
            await asyncio.wait({self._reader}, timeout=3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close_pubsub(), 3)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.aclose(), 3)

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis has confirmed the subscription (or after ``CONFIRM_SECONDS``
        while it is unreachable; the reader subscribes on reconnect). redis-py sends
        SUBSCRIBE without reading the reply, and a PUBLISH on another connection can be
        served first: a subscriber told it is live before the confirmation could miss the
        next event (seen under CPU load)."""
        self._channels.add(channel)
        if not self.connected.is_set() or self._pubsub is None:
            return
        confirmed = self._confirming.get(channel)
        if confirmed is None:
            if channel in self._subscribed():
                return  # subscribed and confirmed before
            confirmed = asyncio.get_running_loop().create_future()
            self._confirming[channel] = confirmed
            try:
                await self._sync_channels()
            except _REDIS_ERRORS as exc:  # the reader subscribes it again (``_sync_channels``)
                log.warning("event bus: SUBSCRIBE %s failed: %r", channel, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_SECONDS)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._pubsub is not None and self.connected.is_set():
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._pubsub.unsubscribe(channel)

    def _subscribed(self) -> set[str]:
        """Channels the connection is subscribed to and not leaving. redis-py keeps a channel
        in ``channels`` until Redis answers its UNSUBSCRIBE, and that answer then drops it: a
        channel wanted again meanwhile must be subscribed again (the new SUBSCRIBE takes it
        out of ``pending_unsubscribe_channels``, and Redis serves the two in order)."""
        assert self._pubsub is not None
        leaving = {_text(c) for c in self._pubsub.pending_unsubscribe_channels}
        return {_text(c) for c in self._pubsub.channels} - leaving

    async def _sync_channels(self, *, lost: bool = False) -> None:
        """Subscribe the connection to every wanted channel it is not subscribed to yet.

        Called after each (re)connect and on each new channel, so a channel added while
        the reader was connecting is never left out; and by the reader once a second
        (``lost``: what it finds missing then, Redis lost, and it is logged). redis-py
        reconnects a pub/sub connection inside a read without telling (its retry) and
        re-subscribes only the channels it had recorded: a SUBSCRIBE that failed on the old
        connection was lost, and its subscriber heard nothing for good
        (test_per_tenant_cap[postgres] under load: the channel wanted, the bus connected,
        Redis not subscribed)."""
        if self._pubsub is None:
            return
        missing = self._channels - self._subscribed()
        if missing:
            if lost:
                log.warning("event bus: re-subscribing %d channel(s) Redis lost", len(missing))
            await self._pubsub.subscribe(*missing)

    async def publish(self, channel: str, message: Any) -> None:
        assert self._client is not None, "connect() first"
        try:
            await self._client.publish(channel, message)
        except _REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis publish failed: {exc}") from exc

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        """``(channel, message)`` pairs in one round trip: a pipeline on one connection, so
        Redis serves them in this order."""
        assert self._client is not None, "connect() first"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(channel, message)
                await pipe.execute()
        except _REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis publish failed: {exc}") from exc

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def ping(self) -> None:
        assert self._client is not None, "connect() first"
        try:
            await self._client.ping()
        except _REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis unreachable: {exc}") from exc

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None

    def _confirm(self, message: dict[str, Any]) -> bool:
        """True for anything but a published message; a SUBSCRIBE's confirmation releases
        whoever waits for it."""
        if message.get("type") == "message":
            return False
        if message.get("type") == "subscribe":
            waiting = self._confirming.pop(_text(message["channel"]), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
        return True

    async def _confirmed(self) -> None:
        """Publish a token on the heartbeat channel and read until it comes back. redis-py
        sends SUBSCRIBE without reading its reply, and Redis answers one connection in
        order, so once the token is here every SUBSCRIBE sent before it is in force. Only
        then may the relay publish (``connected``): an event published earlier would reach
        no one. Messages that arrive meanwhile are queued as usual."""
        assert self._pubsub is not None
        assert self._client is not None
        token = f"ready-{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFIRM_SECONDS
        while loop.time() < deadline:
            await self._client.publish(_HEARTBEAT, token)
            resend = min(deadline, loop.time() + 0.5)
            while (left := resend - loop.time()) > 0:
                message = await self._pubsub.get_message(timeout=left)
                if message is None or self._confirm(message):
                    continue
                if _text(message["channel"]) == _HEARTBEAT:
                    if _text(message["data"]) == token:
                        return
                    continue
                self._queue.put_nowait(Event(message["channel"], message["data"]))
        raise RedisTimeoutError("the subscription was not confirmed")

    async def _read_forever(self) -> None:
        backoff = 0.05
        lost = False
        assert self._client is not None
        while not self._closing:
            try:
                self._pubsub = self._client.pubsub()
                await self._pubsub.subscribe(*self._channels, _HEARTBEAT)
                while True:  # a channel wanted while confirming is subscribed and confirmed
                    await self._sync_channels()
                    synced = set(self._channels)
                    await self._confirmed()
                    if self._channels <= synced:
                        break
                if lost:
                    self.reconnects += 1
                    log.warning("event bus reconnected to redis")
                lost = False
                self.connected.set()
                for listener in self.on_connected:
                    listener()
                backoff = 0.05
                loop = asyncio.get_running_loop()
                next_check = loop.time() + 1.0
                while not self._closing:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if loop.time() >= next_check:  # once a second, not per message
                        next_check = loop.time() + 1.0
                        await self._sync_channels(lost=True)
                    if message is None or self._confirm(message):
                        continue
                    if _text(message["channel"]) == _HEARTBEAT:
                        continue  # another process's readiness token: not an event
                    self._queue.put_nowait(Event(message["channel"], message["data"]))
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                if self.connected.is_set():
                    log.warning("event bus lost redis: %s; reconnecting", exc)
                lost = True
                self.connected.clear()
                await self._close_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)


class EventBus:
    """Publishes envelopes to per-tenant channels and subscribes to them."""

    def __init__(self, url: str, *, namespace: str = "studio") -> None:
        scheme = urlparse(url).scheme
        self.namespace = namespace
        self._redis: ResilientRedisBackend | None = None
        backend: BroadcastBackend
        if scheme in ("redis", "rediss"):
            backend = self._redis = ResilientRedisBackend(url)
        elif scheme == "memory":
            backend = MemoryBackend(url)
        else:
            raise ValueError(f"unsupported STUDIO_BROADCAST_URL scheme: {scheme!r}")
        self._broadcast = Broadcast(backend=backend)
        # Set by the per-process fan-out hub, which holds the subscribers (one bus
        # subscription per tenant channel fans out to all of them).

    async def connect(self) -> None:
        await self._broadcast.connect()

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` each time the bus (re)connects, e.g. to wake the outbox relay
        at once after an outage instead of at the end of its back-off."""
        if self._redis is not None:
            self._redis.on_connected.append(listener)

    async def disconnect(self) -> None:
        await self._broadcast.disconnect()

    def channel(self, tenant_id: str) -> str:
        return tenant_channel(self.namespace, tenant_id)

    async def publish(self, tenant_id: str, payload: str) -> None:
        """Publish a serialized envelope; raises ``BusUnavailable`` when the bus is down."""
        await self._broadcast.publish(self.channel(tenant_id), payload)

    async def publish_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Publish ``(tenant id, serialized envelope)`` pairs in order, in one round trip to
        Redis (the relay's batch: one awaited round trip per event took seconds for a batch
        of 100 while the process was busy serving requests). All or nothing is known to
        have gone: on ``BusUnavailable`` the caller publishes them all again."""
        if self._redis is not None:
            await self._redis.publish_many([(self.channel(t), p) for t, p in items])
            return
        for tenant_id, payload in items:
            await self.publish(tenant_id, payload)

    @property
    def wake_channel(self) -> str:
        """Where a replica that does not relay says it committed events (``wake_relays``)."""
        return f"{self.namespace}.outbox.wake"

    async def wake_relays(self) -> None:
        """Wake the outbox relays of every replica (one message on ``wake_channel``): sent
        after a commit with events by a process whose own relay does not run (an API-only
        replica), so its events wait for no relay's poll. Best effort: the poll remains."""
        try:
            await self._broadcast.publish(self.wake_channel, "1")
        except Exception:
            log.debug("outbox wake not published", exc_info=True)

    @asynccontextmanager
    async def wakes(self) -> AsyncIterator[AsyncIterator[None]]:
        """The ``wake_relays`` calls of every replica, as they come."""
        async with self._broadcast.subscribe(self.wake_channel) as subscriber:

            async def each() -> AsyncIterator[None]:
                async for event in subscriber:  # type: ignore[union-attr]
                    if event is None:
                        return
                    yield None

            yield each()

    @asynccontextmanager
    async def subscribe(self, tenant_id: str) -> AsyncIterator[AsyncIterator[EventEnvelope]]:
        async with self._broadcast.subscribe(self.channel(tenant_id)) as subscriber:

            async def envelopes() -> AsyncIterator[EventEnvelope]:
                async for event in subscriber:  # type: ignore[union-attr]
                    if event is None:
                        return
                    yield EventEnvelope.from_json(event.message)

            yield envelopes()

    @property
    def connected(self) -> bool:
        """False while the Redis subscription connection is down (memory:// is always up).

        The relay holds events back meanwhile: publishing while this process's own
        subscribers are not yet re-subscribed would lose the events for them."""
        return self._redis is None or self._redis.connected.is_set()

    async def ping(self) -> None:
        if self._redis is not None:
            await self._redis.ping()
