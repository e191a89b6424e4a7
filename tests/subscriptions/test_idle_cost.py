"""What an idle subscriber costs the server (issue #14: ≤ 40 KiB RSS each, 10,000 in one
process). Counted, not timed: tasks, queues and compressors per idle socket.

Measured before (2,000 idle subscribers, tracemalloc): four tasks per socket (uvicorn's, two
per pending ``receive`` for the token-expiry wrapper, one per cohort member), two asyncio
queues, and a zlib compressor and decompressor per socket from permessage-deflate
(~50 KiB traced of ~95)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection

from studio_integrations.app import WEBSOCKET_SERVER_OPTIONS
from studio_integrations.auth.gateway import GraphQLGateway
from tests.conftest import TokenFactory
from tests.support.live import LiveServer, serve
from tests.support.ws import init, receive, send, ws_connect

DOCUMENT = "subscription { auditEvents { id type } }"
SOCKETS = 12


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def _until(predicate: object, what: str) -> None:
    for _ in range(1000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def idle_subscribers(
    server: LiveServer, token: str, per_socket: int
) -> AsyncIterator[list[ClientConnection]]:
    """``SOCKETS`` sockets with ``per_socket`` identical subscriptions each (one cohort),
    all subscribed and idle. The client sends no pings, so it runs no task of its own."""
    hub = server.services.hub
    assert hub is not None
    wanted = hub.subscribers("acme") + SOCKETS * per_socket
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for _ in range(SOCKETS):
            ws = await stack.enter_async_context(ws_connect(server.ws_url, ping_interval=None))
            assert (await init(ws, token))["type"] == "connection_ack"
            for n in range(per_socket):
                payload = {"query": DOCUMENT}
                await send(ws, {"id": f"op{n}", "type": "subscribe", "payload": payload})
            sockets.append(ws)
        await _until(lambda: hub.subscribers("acme") == wanted, "the subscribers")
        await asyncio.sleep(0.05)  # let the handshakes' short-lived tasks finish
        yield sockets


@pytest.mark.parametrize("per_socket", [1, 3])
async def test_an_idle_subscriber_costs_no_task_and_no_queue(
    server: LiveServer, make_token: TokenFactory, per_socket: int
) -> None:
    """Per idle socket the server runs one task, uvicorn's own for the connection: the
    token-expiry timer is an entry of one shared timer, and a cohort member is an entry of
    its cohort's set (no task, no queue until a write has to wait)."""
    token = make_token(ttl=timedelta(minutes=30))  # armed: the socket has an expiry
    # A first subscriber opens the tenant's channel and its cohort (shared, not counted).
    async with idle_subscribers(server, token, 1):
        gc.collect()
        tasks = len(asyncio.all_tasks())
        queues = _alive(asyncio.Queue)
        async with idle_subscribers(server, token, per_socket) as sockets:
            assert len(server.services.hub.cohorts) == 1  # type: ignore[union-attr]
            # The handshakes' short-lived tasks end on their own; on a loaded machine some
            # take longer than the settling pause, so the count may take a moment to settle.
            for _ in range(500):
                per_task = (len(asyncio.all_tasks()) - tasks) / SOCKETS
                if per_task <= 1:
                    break
                await asyncio.sleep(0.01)
            per_queue = (_alive(asyncio.Queue) - queues) / SOCKETS
            assert per_task <= 1, f"{per_task:.2f} tasks per idle socket"
            assert per_queue <= 1, f"{per_queue:.2f} queues per idle socket"
            # and they are live: one event reaches every subscription of every socket
            await server.services.bus.publish("acme", _event_json())
            for ws in sockets:
                ids = {(await asyncio.wait_for(receive(ws), 10))["id"] for _ in range(per_socket)}
                assert ids == {f"op{n}" for n in range(per_socket)}


def _event_json() -> str:
    from tests.subscriptions.test_cohorts import blob_event

    return blob_event(0).to_json()


async def test_served_sockets_do_not_negotiate_compression(app: Starlette) -> None:
    """permessage-deflate is off where the app is served: a client that offers it (every
    browser does) gets plain frames, and the server keeps no zlib state per socket."""
    async with (
        serve(app, lifespan="off", **WEBSOCKET_SERVER_OPTIONS) as live,
        ws_connect(live.ws_url, compression="deflate") as ws,
    ):
        assert ws.request is not None and ws.response is not None
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_closed_sockets_leave_the_expiry_timer(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """Every socket with a token is in the one expiry timer while it is open, and out of it
    once closed (nothing of it is kept until its token's deadline)."""
    route = next(r for r in server.app.routes if isinstance(r, WebSocketRoute))
    gateway = route.endpoint
    assert isinstance(gateway, GraphQLGateway)
    async with idle_subscribers(server, make_token(ttl=timedelta(minutes=30)), 1):
        assert len(gateway.expiry_wheel) == SOCKETS
    await _until(lambda: len(gateway.expiry_wheel) == 0, "the sockets to leave the timer")
