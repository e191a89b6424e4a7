"""Cohorts: identical subscriptions are executed once per event and share one frame, which
equals what Strawberry's own per-subscriber execution gives, guards included."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection

from studio_integrations.auth.principal import Principal
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import SYSTEM_ACTOR
from studio_integrations.core.ids import new_id
from studio_integrations.events.envelope import EventEnvelope, EventSubject, EventType
from studio_integrations.schema.context import StudioContext
from studio_integrations.schema.schema import schema
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import Backend
from tests.support.events import audit_event
from tests.support.live import LiveServer
from tests.support.ws import init, receive, send, ws_connect

FAILURES = """
subscription ($category: FailureCategory) {
  integrationFailures(category: $category) {
    id category message occurrences
    connection { id name }
    run { id }
    delivery { id }
  }
}
"""
VARIABLES = {"category": "TIMEOUT"}
SCOPE_SETS = [
    frozenset(Scope),  # every guard passes
    frozenset({Scope.HEALTH_READ}),  # connection, run and delivery: null + FORBIDDEN
    frozenset({Scope.HEALTH_READ, Scope.CONNECTIONS_READ}),  # delivery only: FORBIDDEN
]


QUEUE_SIZE = 8  # a slow member is dropped after a few events


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, subscription_queue_size=QUEUE_SIZE)


def failure(category: str = "TIMEOUT") -> EventEnvelope:
    return EventEnvelope(
        id=new_id("AuditEvent"),
        type=EventType.INTEGRATION_FAILURE_RAISED.value,
        tenant_id="acme",
        occurred_at=utcnow(),
        actor=SYSTEM_ACTOR,
        trace_id="0" * 32,
        subject=EventSubject("IntegrationFailure", new_id("IntegrationFailure")),
        data={
            "category": category,
            "message": "timed out",
            "occurrences": 3,
            "connectionId": new_id("IntegrationConnection"),
            "runId": new_id("IntegrationRun"),
            "deliveryId": new_id("WebhookDelivery"),
        },
    )


@contextlib.asynccontextmanager
async def per_subscriber(
    services: Services, scopes: frozenset[Scope]
) -> AsyncIterator[asyncio.Queue[Any]]:
    """Strawberry's own execution of the same subscription for one subscriber (in process,
    through the same hub): its results, as they come."""

    async def unused() -> Any:
        raise AssertionError("the socket is not used")

    socket = WebSocket({"type": "websocket", "path": "/graphql", "headers": []}, unused, unused)
    context = StudioContext(
        request=socket,
        response=socket,
        services=services,
        trace_id="0" * 32,
        principal=Principal("alice", "acme", scopes),
    )
    stream: Any = await schema.subscribe(FAILURES, variable_values=VARIABLES, context_value=context)
    results: asyncio.Queue[Any] = asyncio.Queue()

    async def read() -> None:
        async for result in stream:
            await results.put(result)

    reader = asyncio.create_task(read())
    try:
        yield results
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def as_payload(result: Any) -> dict[str, Any]:
    """The ``next`` payload Strawberry's handler would send for this result."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    return payload


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(receive(ws), 30)
        if message["type"] != "ping":
            return message


async def test_cohort_frames_equal_per_subscriber_execution(
    server: LiveServer, make_token: TokenFactory
) -> None:
    services = server.services
    hub = services.hub
    assert hub is not None
    async with contextlib.AsyncExitStack() as stack:
        sockets: list[tuple[frozenset[Scope], str, ClientConnection]] = []
        reference = {}
        for scopes in SCOPE_SETS:
            reference[scopes] = await stack.enter_async_context(per_subscriber(services, scopes))
            token = make_token(scopes=set(scopes))
            for member in ("a", "b"):
                ws = await stack.enter_async_context(ws_connect(server.ws_url))
                assert (await init(ws, token))["type"] == "connection_ack"
                operation_id = f"{member}{len(sockets)}"
                payload = {"query": FAILURES, "variables": VARIABLES}
                await send(ws, {"id": operation_id, "type": "subscribe", "payload": payload})
                sockets.append((scopes, operation_id, ws))
        wanted = len(sockets) + len(SCOPE_SETS)
        for _ in range(1000):
            if hub.subscribers("acme") == wanted:
                break
            await asyncio.sleep(0.01)
        assert hub.subscribers("acme") == wanted
        assert len(hub.cohorts) == len(SCOPE_SETS)  # one execution per scope set

        for _ in range(3):
            await services.bus.publish("acme", failure("NETWORK").to_json())  # filtered out
            await services.bus.publish("acme", failure().to_json())
            expected = {
                scopes: as_payload(await asyncio.wait_for(reference[scopes].get(), 10))
                for scopes in SCOPE_SETS
            }
            for scopes, operation_id, ws in sockets:
                frame = await next_frame(ws)
                assert (frame["type"], frame["id"]) == ("next", operation_id)
                assert frame["payload"] == expected[scopes]

        # The guards still decide per scope set.
        data = {s: expected[s]["data"]["integrationFailures"] for s in SCOPE_SETS}
        errors = {s: expected[s].get("errors", []) for s in SCOPE_SETS}
        everything, health, with_connections = SCOPE_SETS
        assert errors[everything] == []
        assert data[health]["connection"] is None and data[health]["delivery"] is None
        assert {e["extensions"]["code"] for e in errors[health]} == {"FORBIDDEN"}
        assert {tuple(e["path"]) for e in errors[health]} == {
            ("integrationFailures", "connection"),
            ("integrationFailures", "run"),
            ("integrationFailures", "delivery"),
        }
        assert [tuple(e["path"]) for e in errors[with_connections]] == [
            ("integrationFailures", "delivery")
        ]


async def test_members_leave_and_the_cohort_goes_with_the_last(
    server: LiveServer, make_token: TokenFactory
) -> None:
    hub = server.services.hub
    assert hub is not None
    token = make_token()
    async with ws_connect(server.ws_url) as first, ws_connect(server.ws_url) as second:
        for ws in (first, second):
            await init(ws, token)
            payload = {"query": FAILURES, "variables": VARIABLES}
            await send(ws, {"id": "x", "type": "subscribe", "payload": payload})
        for _ in range(1000):
            if hub.subscribers("acme") == 2:
                break
            await asyncio.sleep(0.01)
        assert len(hub.cohorts) == 1
        await send(first, {"id": "x", "type": "complete"})
        for _ in range(1000):
            if hub.subscribers("acme") == 1:
                break
            await asyncio.sleep(0.01)
        event = failure()
        await server.services.bus.publish("acme", event.to_json())
        frame = await next_frame(second)
        assert frame["payload"]["data"]["integrationFailures"]["id"] == event.subject.id
        await send(second, {"id": "x", "type": "complete"})
        for _ in range(1000):
            if not hub.cohorts:
                break
            await asyncio.sleep(0.01)
        assert not hub.cohorts
        assert hub.subscribers("acme") == 0


BLOB = "subscription { auditEvents { id data } }"


def blob_event(n: int) -> EventEnvelope:
    return audit_event({"n": n, "blob": secrets.token_urlsafe(48 * 1024)})  # fills buffers


async def test_a_slow_member_is_dropped_alone(server: LiveServer, make_token: TokenFactory) -> None:
    """A member that never reads is dropped for its own backlog; the members of its cohort
    that keep up receive every event, in order, and stay."""
    services = server.services
    hub = services.hub
    assert hub is not None
    token = make_token()
    async with contextlib.AsyncExitStack() as stack:
        # max_queue=1: the client stops reading its socket once one frame waits.
        slow = await stack.enter_async_context(ws_connect(server.ws_url, max_queue=1))
        healthy = [await stack.enter_async_context(ws_connect(server.ws_url)) for _ in range(3)]
        for n, ws in enumerate([slow, *healthy]):
            assert (await init(ws, token))["type"] == "connection_ack"
            await send(ws, {"id": f"op{n}", "type": "subscribe", "payload": {"query": BLOB}})
        for _ in range(1000):
            if hub.subscribers("acme") == 4:
                break
            await asyncio.sleep(0.01)
        assert len(hub.cohorts) == 1
        sent = 0
        while hub.dropped == 0:
            assert sent < 2000, "the slow member was never dropped"
            event = blob_event(sent)
            await services.bus.publish("acme", event.to_json())
            sent += 1
            for n, ws in enumerate(healthy, start=1):
                frame = await next_frame(ws)
                assert (frame["id"], frame["payload"]["data"]["auditEvents"]["id"]) == (
                    f"op{n}",
                    event.id,
                )
            assert max(hub.queue_sizes()) <= QUEUE_SIZE
        assert hub.dropped == 1
        assert hub.subscribers("acme") == 3  # the healthy ones are all still there
        event = blob_event(sent)
        await services.bus.publish("acme", event.to_json())
        for ws in healthy:
            frame = await next_frame(ws)
            assert frame["payload"]["data"]["auditEvents"]["id"] == event.id


UPDATED = "subscription { webhookDeliveryUpdated { id status } }"


async def test_delivery_updates_go_through_the_hub(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """webhookDeliveryUpdated reads the delivery feed through the hub: bounded queues and
    cohorts, like the other subscriptions."""
    services = server.services
    hub = services.hub
    assert hub is not None
    feed_bus = services.webhook_feed.bus
    token = make_token()
    async with ws_connect(server.ws_url) as first, ws_connect(server.ws_url) as second:
        for ws in (first, second):
            await init(ws, token)
            await send(ws, {"id": "w", "type": "subscribe", "payload": {"query": UPDATED}})
        for _ in range(1000):
            if hub.subscribers("acme", bus=feed_bus) == 2:
                break
            await asyncio.sleep(0.01)
        assert hub.subscribers("acme", bus=feed_bus) == 2
        assert hub.subscribers("acme") == 0  # the feed's channel, not the audit one
        assert len(hub.cohorts) == 1
