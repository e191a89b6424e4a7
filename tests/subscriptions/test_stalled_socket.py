"""A client that stops reading its socket is dropped with SLOW_CONSUMER after a bounded amount
of events, where the app is served (``WEBSOCKET_SERVER_OPTIONS``). Counted in bytes
published, not timed.

Found by ``python -m bench --fanout --slow-consumer``: Linux grows a TCP send buffer on its
own up to 4 MiB (``net.ipv4.tcp_wmem``; on loopback at once), so the server's writes never had
to wait for a client that read nothing; ~100 s of a 200-events/s stream went into the kernel,
the subscription's backlog never started, and uvicorn's keep-alive closed the socket (1011)
before the documented SLOW_CONSUMER drop."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest
from starlette.applications import Starlette

from studio_integrations.app import WEBSOCKET_SERVER_OPTIONS
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import Backend
from tests.support.events import audit_event
from tests.support.gqlws import subscribe
from tests.support.live import serve
from tests.support.ws import init, receive, send, ws_connect

QUEUE_SIZE = 8
DOCUMENT = "subscription { auditEvents { id data } }"
# What the server may hold for a client that reads nothing before it drops it: its send
# buffers (kernel and transport, a few hundred KiB) and QUEUE_SIZE frames. The kernel's own
# autotuned buffer alone is 4 MiB.
LIMIT = 1024 * 1024


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, subscription_queue_size=QUEUE_SIZE)


def _event(n: int) -> EventEnvelope:
    # a large dashboard event
    return audit_event({"n": n, "blob": secrets.token_urlsafe(1024)})


async def test_a_socket_that_stops_reading_is_dropped_within_a_bounded_backlog(
    app: Starlette, services: Services, make_token: TokenFactory
) -> None:
    hub = services.hub
    assert hub is not None
    token = make_token()
    async with serve(app, lifespan="off", **WEBSOCKET_SERVER_OPTIONS) as live:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        stalled.connect((live.host, live.port))
        stalled.setblocking(False)
        # max_queue=1: the client library stops reading once one frame waits.
        async with ws_connect(live.ws_url, sock=stalled, max_queue=1) as slow:
            assert (await init(slow, token))["type"] == "connection_ack"
            await send(slow, {"id": "slow", "type": "subscribe", "payload": {"query": DOCUMENT}})
            async with subscribe(
                live.ws_url, token, DOCUMENT, live=services.live_subscribers, tenant_id="acme"
            ) as fast:
                published = 0
                n = 0
                while hub.dropped == 0:
                    assert published < LIMIT, (
                        f"a client that reads nothing still not dropped after {published} "
                        "bytes of events"
                    )
                    event = _event(n)
                    payload = event.to_json()
                    await services.bus.publish("acme", payload)
                    published += len(payload)
                    n += 1
                    # Same cohort: once the fast member has it, the stalled one was offered it.
                    assert (await fast.next())["auditEvents"]["id"] == event.id
            # Reading again, the stalled client finds what reached it, then why it was dropped.
            message = await receive(slow)
            while message["type"] == "next" and "errors" not in message["payload"]:
                message = await receive(slow)
            assert message["id"] == "slow"
            assert message["payload"]["errors"][0]["extensions"]["code"] == "SLOW_CONSUMER"
            assert (await receive(slow)) == {"id": "slow", "type": "complete"}
