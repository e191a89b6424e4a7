"""WebSocket authentication (DESIGN §3): 4403 on a bad connection_init, 4401 at expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import TokenFactory
from tests.support.live import LiveServer
from tests.support.ws import init, receive, send, ws_connect

SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {"query": "subscription { auditEvents { id } }"},
}


async def _closed_with(ws: object, code: int, within: float = 5.0) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(receive(ws), within)  # type: ignore[arg-type]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["missing", "invalid"])
async def test_connection_init_without_a_valid_token_is_rejected(
    server: LiveServer, token: str | None
) -> None:
    async with ws_connect(server.ws_url) as ws:
        await send(
            ws,
            {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {token}"} if token else {},
            },
        )
        await _closed_with(ws, 4403)


async def test_expired_token_is_rejected_at_init(
    server: LiveServer, make_token: TokenFactory
) -> None:
    async with ws_connect(server.ws_url) as ws:
        await send(
            ws,
            {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {make_token(ttl=timedelta(minutes=-5))}"},
            },
        )
        await _closed_with(ws, 4403)


async def test_subscribe_before_init_is_refused(server: LiveServer) -> None:
    async with ws_connect(server.ws_url) as ws:
        await send(ws, SUBSCRIBE)
        await _closed_with(ws, 4401)


async def test_token_on_the_upgrade_request_is_accepted(
    server: LiveServer, make_token: TokenFactory
) -> None:
    headers = {"Authorization": f"Bearer {make_token()}"}
    async with ws_connect(server.ws_url, additional_headers=headers) as ws:
        assert (await init(ws, None))["type"] == "connection_ack"


async def test_socket_is_closed_when_its_token_expires(
    server: LiveServer, make_token: TokenFactory
) -> None:
    # Tokens verify with 30 s leeway, but a socket closes at the token's own expiry.
    token = make_token(ttl=timedelta(seconds=2))
    async with ws_connect(server.ws_url) as ws:
        assert (await init(ws, token))["type"] == "connection_ack"
        await send(ws, SUBSCRIBE)
        await _closed_with(ws, 4401, within=6)
    # The subscription died with the socket: nothing is left subscribed on the bus.
    for _ in range(100):
        if server.services.live_subscribers("acme") == 0:
            break
        await asyncio.sleep(0.02)
    assert server.services.live_subscribers("acme") == 0


async def test_legacy_graphql_ws_protocol_is_not_served(server: LiveServer) -> None:
    import websockets

    async with websockets.connect(server.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406
