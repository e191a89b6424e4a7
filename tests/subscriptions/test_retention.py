"""Events delivered to a subscriber leave nothing behind: what the server holds for one
subscription stays flat however many events it delivered (round one kept ~1 KB per event:
graphql-core's per-event executor shared the subscription's field memo)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from graphql.execution.collect_fields import FieldDetails
from starlette.websockets import WebSocket

from studio_integrations.auth.principal import Principal
from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.schema.context import StudioContext
from studio_integrations.schema.schema import schema
from studio_integrations.services import Services
from tests.support.events import audit_event

DOCUMENT = "subscription { auditEvents { id type actor { subject kind } subject { id } } }"


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_a_subscription_keeps_nothing_per_event(services: Services) -> None:
    hub = services.hub
    assert hub is not None

    async def never() -> Any:
        raise AssertionError("the socket is not used")

    socket = WebSocket({"type": "websocket", "path": "/graphql", "headers": []}, never, never)
    context = StudioContext(
        request=socket,
        response=socket,
        services=services,
        trace_id="0" * 32,
        principal=Principal("alice", "acme", frozenset(ALL_SCOPES)),
    )
    stream: Any = await schema.subscribe(DOCUMENT, context_value=context)
    results: asyncio.Queue[Any] = asyncio.Queue()

    async def read() -> None:
        async for result in stream:
            await results.put(result)

    reader = asyncio.create_task(read())
    while hub.subscribers("acme") == 0:
        assert results.empty(), results.get_nowait()
        await asyncio.sleep(0.01)

    async def deliver(n: int) -> None:
        for _ in range(n):
            event = audit_event({})
            await services.bus.publish("acme", event.to_json())
            result = await asyncio.wait_for(results.get(), 10)
            assert result.errors is None, result.errors
            assert result.data["auditEvents"]["id"] == event.id

    try:
        await deliver(20)
        before = _alive(FieldDetails)
        await deliver(200)
        after = _alive(FieldDetails)
        assert after - before < 20, f"{after - before} field memos kept for 200 events"
        assert context._loaders is None  # no event caches on the socket's own context
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
