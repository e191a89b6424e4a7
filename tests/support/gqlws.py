"""Subscriptions through `gql`, an independent graphql-transport-ws client, over a real
socket: proof that our server speaks the protocol as other people's code expects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport


class Subscription:
    def __init__(self) -> None:
        self.results: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        item = await asyncio.wait_for(self.results.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.results.get(), seconds)
        except TimeoutError:
            return True
        return False


@contextlib.asynccontextmanager
async def subscribe(
    ws_url: str,
    token: str,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    live: Callable[[str], int] | None = None,
    tenant_id: str | None = None,
) -> AsyncIterator[Subscription]:
    """Subscribe in the background; when ``bus`` is given, wait until the server's bus
    subscription for ``tenant_id`` is in place, so events emitted next cannot be missed."""
    transport = WebsocketsTransport(
        url=ws_url,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    sub = Subscription()
    before = live(tenant_id) if live and tenant_id else 0

    async def pump() -> None:
        try:
            async with Client(transport=transport) as session:
                request = gql(document)
                request.variable_values = variables
                async for result in session.subscribe(request):
                    await sub.results.put(result)
        except Exception as exc:
            await sub.results.put(exc)

    task = asyncio.create_task(pump())
    try:
        if live is not None and tenant_id is not None:
            for _ in range(500):
                if live(tenant_id) > before or task.done():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the bus SUBSCRIBE reaches Redis before we publish
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
