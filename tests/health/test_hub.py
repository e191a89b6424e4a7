"""The fan-out hub: a subscriber that never reads is dropped with SLOW_CONSUMER while the
server's queues stay bounded, and a fast subscriber on the same channel keeps receiving."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.settings import Settings
from studio_integrations.subscriptions.hub import FanoutHub
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import Backend
from tests.support.events import audit_event
from tests.support.gqlws import subscribe
from tests.support.live import LiveServer
from tests.support.ws import init, receive, send, ws_connect

QUEUE_SIZE = 8
BLOB_BYTES = 48 * 1024  # big, incompressible events fill the slow client's buffers quickly
FAST = "subscription { auditEvents { id } }"
SLOW = "subscription { auditEvents { id data } }"


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, subscription_queue_size=QUEUE_SIZE)


def envelope(n: int) -> EventEnvelope:
    return audit_event({"n": n, "blob": secrets.token_urlsafe(BLOB_BYTES)})


async def _wait_for(predicate: Any, what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_slow_consumer_is_dropped_and_fast_one_keeps_receiving(
    server: LiveServer, make_token: TokenFactory
) -> None:
    services = server.services
    hub = services.hub
    assert isinstance(hub, FanoutHub)
    token = make_token()
    # max_queue=1: the client library stops reading the socket once one frame waits, so
    # the server's writes block as soon as the kernel buffers are full.
    async with ws_connect(server.ws_url, max_queue=1) as slow_ws:
        assert (await init(slow_ws, token))["type"] == "connection_ack"
        await send(slow_ws, {"id": "slow", "type": "subscribe", "payload": {"query": SLOW}})
        await _wait_for(lambda: hub.subscribers("acme") == 1, "the slow subscriber")
        async with subscribe(
            server.ws_url, token, FAST, live=services.live_subscribers, tenant_id="acme"
        ) as fast:
            sent = 0
            high_water = 0
            while hub.dropped == 0:
                assert sent < 2000, "the slow subscriber was never dropped"
                event = envelope(sent)
                await services.bus.publish("acme", event.to_json())
                sent += 1
                # The fast subscriber gets every event, in order, while the slow one lags.
                assert (await fast.next())["auditEvents"]["id"] == event.id
                high_water = max(high_water, hub.high_water(), *hub.queue_sizes(), 0)
            assert high_water <= QUEUE_SIZE  # the server never held more for anyone
            assert hub.subscribers("acme") == 1  # the slow one is gone, its queue released
            assert max(hub.queue_sizes()) <= QUEUE_SIZE
            for n in range(20):  # and the fast one carries on
                event = envelope(sent + n)
                await services.bus.publish("acme", event.to_json())
                assert (await fast.next())["auditEvents"]["id"] == event.id

        # When the slow client finally reads, it finds what had reached its socket, then
        # the reason it was dropped, then the end of the operation.
        received = 0
        while True:
            message = await asyncio.wait_for(receive(slow_ws), 20)
            if message["type"] == "ping":
                continue
            if message["type"] == "next" and "errors" not in message["payload"]:
                received += 1
                continue
            break
        assert 0 < received < sent
        assert message["id"] == "slow"
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "SLOW_CONSUMER"
        assert "subscribe again" in errors[0]["message"]
        if message["type"] == "next":
            final = await asyncio.wait_for(receive(slow_ws), 20)
            assert (final["type"], final["id"]) == ("complete", "slow")
