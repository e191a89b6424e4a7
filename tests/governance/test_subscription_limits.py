"""Live operations are capped per WebSocket and per tenant; a refused subscribe gets an
``error`` message with TOO_MANY_SUBSCRIPTIONS and every other subscription carries on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.governance.conftest import ServerFactory
from tests.support.events import emit, plumbing_state
from tests.support.waiting import until
from tests.support.ws import init, receive, send, ws_connect

AUDIT = {"query": "subscription { auditEvents { id tenantId } }"}


async def subscribe(ws: ClientConnection, operation_id: str) -> None:
    await send(ws, {"id": operation_id, "type": "subscribe", "payload": AUDIT})


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    return await asyncio.wait_for(receive(ws), 10)


def subscribers(services: Services, tenant: str) -> Callable[[], int]:
    return lambda: services.live_subscribers(tenant)


async def events_reach(
    services: Services, ws: ClientConnection, ids: set[str], tenant: str = "acme"
) -> None:
    sent = await emit(services, tenant)
    got: dict[str, str] = {}
    while set(got) != ids:
        try:
            message = await next_message(ws)
        except TimeoutError:
            state = await plumbing_state(services, tenant)
            raise AssertionError(
                f"event {sent.id} did not reach {ids - set(got)}: {state}"
            ) from None
        assert message["type"] == "next", message
        assert message["id"] in ids, message
        got[message["id"]] = message["payload"]["data"]["auditEvents"]["id"]
    assert set(got.values()) == {sent.id}


def too_many(message: dict[str, Any], operation_id: str, scope: str, limit: int) -> None:
    assert message["type"] == "error" and message["id"] == operation_id, message
    (error,) = message["payload"]
    assert error["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit, "scope": scope}


async def test_per_connection_cap(limited_server: ServerFactory, make_token: TokenFactory) -> None:
    async with limited_server(max_subscriptions_per_connection=2) as server:
        live = subscribers(server.services, "acme")
        async with ws_connect(server.ws_url) as ws:
            assert (await init(ws, make_token()))["type"] == "connection_ack"
            await subscribe(ws, "a")
            await subscribe(ws, "b")
            await until(lambda: live() == 2, "two bus subscribers")
            await subscribe(ws, "c")
            too_many(await next_message(ws), "c", "connection", 2)
            await events_reach(
                server.services, ws, {"a", "b"}
            )  # the socket and both others live on
            # Completing one frees its slot.
            await send(ws, {"id": "a", "type": "complete"})
            await until(lambda: live() == 1, "a's bus subscription to end")
            await subscribe(ws, "d")
            await until(lambda: live() == 2, "d's bus subscription")
            await events_reach(server.services, ws, {"b", "d"})


async def test_per_tenant_cap(limited_server: ServerFactory, make_token: TokenFactory) -> None:
    async with limited_server(
        max_subscriptions_per_tenant=2, max_subscriptions_per_connection=10
    ) as server:
        slots = server.services.subscription_slots
        async with ws_connect(server.ws_url) as second, ws_connect(server.ws_url) as globex:
            assert (await init(second, make_token()))["type"] == "connection_ack"
            assert (await init(globex, make_token(tenant="globex")))["type"] == "connection_ack"
            async with ws_connect(server.ws_url) as first:
                assert (await init(first, make_token()))["type"] == "connection_ack"
                await subscribe(first, "a")
                await subscribe(first, "b")
                await until(lambda: slots.live("acme") == 2, "two acme slots")
                await subscribe(second, "c")
                too_many(await next_message(second), "c", "tenant", 2)
                # Another tenant is not affected.
                await subscribe(globex, "g")
                await until(
                    lambda: subscribers(server.services, "globex")() == 1, "globex subscriber"
                )
                await events_reach(server.services, globex, {"g"}, tenant="globex")
            # Closing the first socket gives its slots back.
            await until(lambda: slots.live("acme") == 0, "acme slots released")
            await subscribe(second, "d")
            await until(lambda: subscribers(server.services, "acme")() == 1, "d's bus subscription")
            await events_reach(server.services, second, {"d"})
        await until(lambda: slots.live("globex") == 0, "globex slots released")


async def test_refused_and_finished_operations_hold_no_slot(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    ask: Callable[[ClientConnection, str], Awaitable[None]] = subscribe
    async with limited_server(max_subscriptions_per_tenant=1) as server:
        slots = server.services.subscription_slots
        async with ws_connect(server.ws_url) as ws:
            assert (await init(ws, make_token()))["type"] == "connection_ack"
            # A query over the socket finishes, and its slot is given back.
            await send(
                ws, {"id": "q", "type": "subscribe", "payload": {"query": "{ viewer { subject } }"}}
            )
            assert (await next_message(ws))["type"] == "next"
            assert (await next_message(ws))["type"] == "complete"
            await until(lambda: slots.live("acme") == 0, "the query's slot")
            # An invalid subscription is refused by validation and holds nothing either.
            await send(
                ws, {"id": "x", "type": "subscribe", "payload": {"query": "subscription { nope }"}}
            )
            assert (await next_message(ws))["type"] == "error"
            await until(lambda: slots.live("acme") == 0, "the invalid one's slot")
            await ask(ws, "a")
            await until(lambda: slots.live("acme") == 1, "a's slot")
            await ask(ws, "b")
            too_many(await next_message(ws), "b", "tenant", 1)
