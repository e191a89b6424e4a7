"""A minimal graphql-transport-ws client on the `websockets` library, for protocol-level
assertions (close codes, acks). Interop tests use the independent `gql` client instead."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

PROTOCOL = "graphql-transport-ws"


@asynccontextmanager
async def ws_connect(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(url, subprotocols=[PROTOCOL], **kwargs) as ws:  # type: ignore[list-item]
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def init(ws: ClientConnection, token: str | None) -> dict[str, Any]:
    payload = {"authorization": f"Bearer {token}"} if token else {}
    await send(ws, {"type": "connection_init", "payload": payload})
    return await receive(ws)
