"""Redis restarted under 100 live subscribers: every subscription survives, the events
emitted during the outage arrive after it (outbox), and later events flow as before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import Backend, SqliteTemplate
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.support.redis_server import PrivateRedis, private_redis
from tests.support.ws import init, receive, send, ws_connect

SUBSCRIBERS = 100
DOCUMENT = "subscription { auditEvents { id } }"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path) as server:
        yield server


@pytest.fixture
def settings(redis: PrivateRedis, sqlite_template: SqliteTemplate, tmp_path: Path) -> Settings:
    backend = Backend("sqlite+private-redis", sqlite_template.fresh(tmp_path), redis.url)
    return make_settings(backend, tmp_path)


async def _wait_for(predicate: Any, what: str) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def _next_id(ws: ClientConnection) -> str:
    while True:
        message = await asyncio.wait_for(receive(ws), 30)
        if message["type"] == "next":
            event_id: str = message["payload"]["data"]["auditEvents"]["id"]
            return event_id
        assert message["type"] == "ping", message  # keep-alive pings are fine, nothing else


async def _two_ids(ws: ClientConnection) -> list[str]:
    return [await _next_id(ws), await _next_id(ws)]


@contextlib.asynccontextmanager
async def _subscribers(url: str, token: str, n: int) -> AsyncIterator[list[ClientConnection]]:
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for i in range(n):
            ws = await stack.enter_async_context(ws_connect(url))
            assert (await init(ws, token))["type"] == "connection_ack"
            await send(ws, {"id": f"s{i}", "type": "subscribe", "payload": {"query": DOCUMENT}})
            sockets.append(ws)
        yield sockets


async def test_subscriptions_survive_a_redis_restart(
    server: LiveServer, redis: PrivateRedis, make_token: TokenFactory
) -> None:
    services = server.services
    assert services.hub is not None
    async with _subscribers(server.ws_url, make_token(), SUBSCRIBERS) as sockets:
        await _wait_for(lambda: services.hub.subscribers("acme") == SUBSCRIBERS, "subscribers")
        before = await emit(services, "acme", subject_id="prov_before")
        assert await asyncio.gather(*(_next_id(ws) for ws in sockets)) == [before.id] * SUBSCRIBERS

        redis.stop()
        await _wait_for(lambda: not services.bus.connected, "the bus to notice the outage")
        during = await emit(services, "acme", subject_id="prov_during")  # kept in the outbox
        redis.start()
        await _wait_for(lambda: services.bus.connected, "the bus to reconnect")
        after = await emit(services, "acme", subject_id="prov_after")

        got = await asyncio.gather(*(_two_ids(ws) for ws in sockets))
        assert all(pair == [during.id, after.id] for pair in got), got[:3]
        assert services.hub.subscribers("acme") == SUBSCRIBERS  # nobody was dropped
        assert services.hub.dropped == 0
