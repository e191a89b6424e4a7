"""Several dispatchers over one database: shared work without double delivery, and a dead
dispatcher's claims taken over once their lease expires (at-least-once, same webhook-id)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from studio_integrations.core.enums import DeliveryStatus
from studio_integrations.persistence.db import Database
from tests.fakes.receiver import WebhookReceiver
from tests.support.backends import Backend
from tests.support.live import LiveServer
from tests.webhooks.conftest import Clock, deliveries, hand_dispatcher
from tests.webhooks.test_dispatcher import subscribe_and_emit

REPO = Path(__file__).resolve().parents[2]


async def test_two_dispatchers_share_the_queue_without_double_delivery(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url, events=30)
    clock = Clock()
    other_db = Database(services.settings.database_url)  # another replica's own pool
    try:
        first = hand_dispatcher(services, clock, batch_size=4)
        second = hand_dispatcher(services, clock, batch_size=4)
        second._db = other_db

        async def drain(dispatcher: object) -> None:
            while await dispatcher.dispatch_once():  # type: ignore[attr-defined]
                pass

        await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
    finally:
        await other_db.dispose()
    ids = Counter(r.webhook_id for r in receiver.received)
    assert len(ids) == 30
    assert set(ids.values()) == {1}  # nothing sent twice
    rows = await deliveries(services, subscription_id=sub["id"])
    assert {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}
    assert first.attempts + second.attempts == 30


async def test_a_crashed_claim_is_taken_over_after_its_lease(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    crashed = hand_dispatcher(services, clock, lease_seconds=60)
    assert len(await crashed.claim()) == 1  # …and dies before sending
    survivor = hand_dispatcher(services, clock, lease_seconds=60)
    assert await survivor.dispatch_once() == 0  # the lease is live
    clock.advance(61)
    assert await survivor.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert len(receiver.received) == 1


async def test_dying_mid_delivery_sends_again_with_the_same_webhook_id(
    server: LiveServer, http: httpx.AsyncClient, token: str, receiver: WebhookReceiver
) -> None:
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url)
    clock = Clock()
    receiver.hold()
    dying = hand_dispatcher(services, clock)
    task = asyncio.create_task(dying.dispatch_once())
    await receiver.wait_for(1)  # the request is at the receiver, the answer not yet back
    task.cancel()  # the process dies: nothing recorded
    with pytest.raises(asyncio.CancelledError):
        await task
    receiver.release()
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.PENDING  # never marked done without a 2xx
    clock.advance(61)
    assert await hand_dispatcher(services, clock).dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.SUCCEEDED
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == delivery.message_id


async def test_killing_a_dispatcher_process_loses_nothing(
    backend: Backend,
    server: LiveServer,
    http: httpx.AsyncClient,
    token: str,
    receiver: WebhookReceiver,
) -> None:
    """Two worker processes on PostgreSQL: one is killed (SIGKILL) while its requests are at
    the receiver; the other takes every delivery over once the leases expire."""
    if backend.name != "postgres":
        pytest.skip("two processes over one database: the PostgreSQL deployment")
    services = server.services
    sub = await subscribe_and_emit(server.services, http, token, receiver.url, events=5)
    receiver.hold()
    env = {
        **os.environ,
        "STUDIO_DATABASE_URL": services.settings.database_url,
        "STUDIO_MASTER_KEY": "test-master-key",
        "STUDIO_ALLOW_LOOPBACK_TARGETS": "true",
        "STUDIO_WEBHOOK_LEASE_SECONDS": "60",
        "STUDIO_STATE_DIR": str(services.settings.state_dir),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.webhooks.worker_process",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 30)
        assert line.strip() == b"CLAIMED 5"
        await receiver.wait_for(5)
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    receiver.release()
    rows = await deliveries(services, subscription_id=sub["id"])
    assert {r.status for r in rows} == {DeliveryStatus.PENDING}  # nothing marked done
    clock = Clock()
    survivor = hand_dispatcher(services, clock)
    assert await survivor.dispatch_once() == 0  # the dead worker's leases are live
    clock.advance(61)
    assert await survivor.dispatch_once() == 5
    rows = await deliveries(services, subscription_id=sub["id"])
    assert {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}
    ids = Counter(r.webhook_id for r in receiver.received)
    assert set(ids) == {r.message_id for r in rows}  # every event delivered
    assert set(ids.values()) == {2}  # the duplicates carry the same webhook-id
