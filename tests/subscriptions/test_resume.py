"""Resumable subscriptions: `after` replays every event committed since, in commit order
(not id order), then continues live with no gap and no duplicate; bad cursors are refused
with a code."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection

from studio_integrations.core.clock import utcnow
from studio_integrations.core.ids import new_id
from studio_integrations.events import outbox
from studio_integrations.events.envelope import EventEnvelope
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import AuditEvent
from tests.conftest import TokenFactory
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.support.ws import init, receive, send, ws_connect

EVENTS = "subscription ($after: ID) { auditEvents(after: $after) { id cursor } }"


async def _next(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(receive(ws), timeout)
        if message["type"] != "ping":
            return message


async def _subscribe(server: LiveServer, ws: ClientConnection, token: str, after: Any) -> None:
    assert (await init(ws, token))["type"] == "connection_ack"
    payload = {"query": EVENTS, "variables": {"after": after}}
    await send(ws, {"id": "s", "type": "subscribe", "payload": payload})


async def _live(server: LiveServer, count: int, tenant: str = "acme") -> None:
    for _ in range(1000):
        if server.services.live_subscribers(tenant) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the subscription never went live")


async def _event(ws: ClientConnection) -> dict[str, Any]:
    message = await _next(ws)
    assert message["type"] == "next" and "errors" not in message["payload"], message
    event: dict[str, Any] = message["payload"]["data"]["auditEvents"]
    return event


async def _error_code(ws: ClientConnection) -> str:
    message = await _next(ws)
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    code: str = errors[0]["extensions"]["code"]
    return code


async def test_resume_replays_in_commit_order_then_goes_live(
    server: LiveServer, make_token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = server.services
    token = make_token()
    async with ws_connect(server.ws_url) as watcher:
        await _subscribe(server, watcher, token, None)
        await _live(server, 1)
        async with ws_connect(server.ws_url) as client:
            await _subscribe(server, client, token, None)
            await _live(server, 2)
            first = await emit(services, "acme", subject_id="prov_first")
            seen = await _event(client)
            assert seen["id"] == first.id and seen["cursor"]
            assert (await _event(watcher))["id"] == first.id
        cursor = seen["cursor"]

        # While the client is away: 5 events, one of which commits after two later ids.
        early_id = new_id("AuditEvent")
        sent: list[EventEnvelope] = [await emit(services, "acme") for _ in range(2)]
        real_new_id = outbox.new_id
        monkeypatch.setattr(
            outbox, "new_id", lambda kind: early_id if kind == "AuditEvent" else real_new_id(kind)
        )
        sent.append(await emit(services, "acme"))
        monkeypatch.setattr(outbox, "new_id", real_new_id)
        sent += [await emit(services, "acme") for _ in range(2)]
        assert sent[2].id == early_id and sorted(e.id for e in sent)[0] == early_id
        committed = [await _event(watcher) for _ in sent]
        assert [e["id"] for e in committed] == [e.id for e in sent]  # commit order

        async with ws_connect(server.ws_url) as client:
            await _subscribe(server, client, token, cursor)
            replayed = [await _event(client) for _ in sent]
            assert replayed == committed  # exactly those 5, in commit order, with cursors
            await _live(server, 2)
            live = await emit(services, "acme")
            assert (await _event(client))["id"] == live.id  # then live, no duplicate
            assert (await _event(watcher))["id"] == live.id

        # From the cursor of the second event: the early id committed after it comes too.
        async with ws_connect(server.ws_url) as client:
            await _subscribe(server, client, token, committed[1]["cursor"])
            again = [await _event(client) for _ in range(4)]
            assert [e["id"] for e in again] == [e["id"] for e in committed[2:]] + [live.id]


async def test_bad_cursors_are_refused_with_a_code(
    server: LiveServer, make_token: TokenFactory
) -> None:
    services = server.services
    token = make_token()
    async with ws_connect(server.ws_url) as ws:
        await _subscribe(server, ws, token, None)
        await _live(server, 1)
        event = await emit(services, "acme")
        cursor = (await _event(ws))["cursor"]
    cases = [
        (token, "not-a-cursor", "CURSOR_INVALID"),
        (token, "evc_999999999", "CURSOR_NOT_FOUND"),
        (make_token(tenant="globex"), cursor, "CURSOR_NOT_FOUND"),  # another tenant's
    ]
    for who, after, code in cases:
        async with ws_connect(server.ws_url) as ws:
            await _subscribe(server, ws, who, after)
            assert await _error_code(ws) == code
    async with services.db.transaction(TenantScope.of("acme")) as session:
        await session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == event.id)
            .values(occurred_at=utcnow() - timedelta(days=2))
        )
    async with ws_connect(server.ws_url) as ws:
        await _subscribe(server, ws, token, cursor)
        assert await _error_code(ws) == "CURSOR_EXPIRED"
