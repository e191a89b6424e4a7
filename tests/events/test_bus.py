"""The Redis bus: a subscription is live only once Redis has confirmed it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from studio_integrations.events.bus import ResilientRedisBackend
from tests.support.backends import REDIS_URL, port_open, unavailable


class HoldingProxy:
    """A loopback TCP proxy to Redis that can hold back Redis's replies (``hold``) until
    ``release``: what a busy Redis that has not served a SUBSCRIBE yet looks like."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.replies = asyncio.Event()
        self.replies.set()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    def hold(self) -> None:
        self.replies.clear()

    def release(self) -> None:
        self.replies.set()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if held:
                    await self.replies.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection(self.host, self.port)
        await asyncio.gather(
            self._pipe(client_r, redis_w, held=False), self._pipe(redis_r, client_w, held=True)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HoldingProxy]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self.release()
            self.server.close()


@contextlib.asynccontextmanager
async def connected(url: str = REDIS_URL) -> AsyncIterator[ResilientRedisBackend]:
    """A backend on ``url``, connected (Redis confirmed its subscriptions), disconnected
    after."""
    if not port_open(REDIS_URL, 6379):
        unavailable("Redis")
    backend = ResilientRedisBackend(url)
    await backend.connect()
    try:
        await asyncio.wait_for(backend.connected.wait(), 10)
        yield backend
    finally:
        await backend.disconnect()


async def test_subscribe_returns_once_redis_confirmed_it() -> None:
    async with HoldingProxy(REDIS_URL).running() as proxy, connected(proxy.url) as backend:
        proxy.hold()
        subscribing = asyncio.create_task(backend.subscribe("studio-test.bus.confirm"))
        await asyncio.sleep(0.2)  # ample time for a SUBSCRIBE to be sent; no reply can come
        # Returned before Redis answered, a subscriber could miss the next event
        # published on another connection.
        assert not subscribing.done()
        proxy.release()
        await asyncio.wait_for(subscribing, 10)


async def test_subscribing_again_while_an_unsubscribe_is_unanswered_keeps_the_channel() -> None:
    """The last subscriber of a tenant leaves and a new one comes before Redis has answered
    the UNSUBSCRIBE: redis-py still lists the channel as subscribed until that answer, so
    without care the new SUBSCRIBE was never sent and the answer then removed the channel
    (test_per_tenant_cap[postgres] missed its event in CI)."""
    channel = "studio-test.bus.resubscribe"
    async with (
        HoldingProxy(REDIS_URL).running() as proxy,
        connected(proxy.url) as backend,
        connected() as publisher,
    ):
        await backend.subscribe(channel)
        proxy.hold()
        await backend.unsubscribe(channel)
        subscribing = asyncio.create_task(backend.subscribe(channel))
        await asyncio.sleep(0.2)  # both commands sent; their answers are held
        proxy.release()
        await asyncio.wait_for(subscribing, 10)
        await publisher.publish(channel, "after")
        event = await asyncio.wait_for(backend.next_published(), 10)
        assert (event.channel, event.message) == (channel, "after")


async def test_other_processes_readiness_tokens_are_not_events() -> None:
    """Every process confirms its subscriptions by a token on the shared heartbeat channel;
    the other processes' tokens reached the broadcaster as published events (and this
    module's test that reads the published queue failed on one in a parallel run)."""
    channel = "studio-test.bus.after-heartbeat"
    async with connected() as backend, connected() as publisher:
        await backend.subscribe(channel)
        await publisher.publish("studio.bus.heartbeat", "ready-of-another-process")
        await publisher.publish(channel, "event")
        event = await asyncio.wait_for(backend.next_published(), 10)
        assert (event.channel, event.message) == (channel, "event")


async def test_a_wanted_channel_the_connection_lost_is_subscribed_again() -> None:
    """redis-py can reconnect the pub/sub connection inside a read and re-subscribe only
    what it had recorded, so a channel whose SUBSCRIBE failed on the old connection was
    wanted but never subscribed again. Here the connection leaves the channel behind the
    backend's back; the reader must notice and subscribe it again."""
    channel = "studio-test.bus.lost"
    async with connected() as backend, connected() as publisher:
        await backend.subscribe(channel)
        await backend._pubsub.unsubscribe(channel)  # the lost state, behind its back
        for attempt in range(100):  # bounded: 10 s
            await publisher.publish(channel, f"event {attempt}")
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(backend.next_published(), 0.1)
                assert event.channel == channel
                break
        else:
            raise AssertionError("the lost channel was never subscribed again")
