"""Webhook dispatcher throughput (DESIGN §11: ≥ 500 signed deliveries/s, one process).

One run, one machine: a loopback receiver in its own process (``bench.receiver``); first its
own rate (the dispatcher's HTTP client posting the same body as fast as the dispatcher's
pool allows), then the dispatcher draining ``N`` due deliveries of ``S`` subscriptions from a
fresh database (SQLite file, or a PostgreSQL database made for the run and dropped after).
Reported: deliveries/s and its ratio to the receiver's rate.

``python -m bench --dispatcher [--backend sqlite|postgres|both] [--deliveries N]
[--profile FILE]`` (``--profile`` writes cProfile stats of the dispatcher phase).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, insert, select
from tests.support.backends import free_port

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import DeliveryDirection, DeliveryStatus, SignatureStatus
from studio_integrations.core.ids import new_id
from studio_integrations.domain import webhooks as domain
from studio_integrations.persistence.db import Database, TenantScope, TenantSessions
from studio_integrations.persistence.migrations import upgrade
from studio_integrations.persistence.models import WebhookDelivery
from studio_integrations.services import outbound_client
from studio_integrations.settings import Settings
from studio_integrations.vault.factory import make_secret_store
from studio_integrations.workers.webhook_dispatcher import WebhookDispatcher

PG_ADMIN_DSN = os.environ.get("STUDIO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TENANT = "bench"
BODY = (
    '{"id":"evt","type":"ProviderRegistered","tenantId":"bench","data":{"n":1},'
    + '"pad":"'
    + "x" * 300
    + '"}'
)


@contextlib.asynccontextmanager
async def receiver(*options: str) -> AsyncIterator[str]:
    """A ``bench.receiver`` process (``options``: its flags); yields its URL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.receiver", str(port), *options
    )
    url = f"http://127.0.0.1:{port}/hooks"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    await client.post(url, content=b"{}")
                    break
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def receiver_rate(url: str, count: int, concurrency: int) -> float:
    """Requests/s the receiver takes from the dispatcher's own HTTP client (same pool)."""
    http = outbound_client()
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            response = await http.post(
                url, content=BODY, headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)
    finally:
        await http.aclose()


@contextlib.asynccontextmanager
async def database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            await asyncio.to_thread(upgrade, url)
            yield url
        return
    name = f"studio_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://", 1).rsplit("/", 1)[0]
    url = f"{url}/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def dispatcher_rate(
    db_url: str,
    endpoint: str,
    count: int,
    subscriptions: int,
    concurrency: int,
    profile: cProfile.Profile | None,
) -> float:
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(database_url=db_url, state_dir=Path(state), allow_loopback_targets=True)
        db = Database(db_url)
        vault = make_secret_store(settings, db)
        http = outbound_client()
        sessions = TenantSessions(db, TenantScope.of(TENANT))
        ctx = ActionContext.system(TENANT)
        subs = [
            await domain.create_subscription(
                sessions,
                ctx,
                vault=vault,
                allow_loopback=True,
                definition=domain.SubscriptionDefinition(
                    event_type="ProviderRegistered", endpoint_url=f"{endpoint}/{i}"
                ),
            )
            for i in range(subscriptions)
        ]
        now = utcnow()
        rows = []
        for i in range(count):
            event_id = new_id("AuditEvent")
            rows.append(
                {
                    "id": new_id("WebhookDelivery"),
                    "tenant_id": TENANT,
                    "direction": DeliveryDirection.OUTBOUND,
                    "subscription_id": subs[i % subscriptions].id,
                    "event_type": "ProviderRegistered",
                    "event_id": event_id,
                    "message_id": event_id,
                    "status": DeliveryStatus.PENDING,
                    "signature_status": SignatureStatus.NOT_APPLICABLE,
                    "payload": BODY,
                    "headers": {},
                    "attempt_count": 0,
                    "next_attempt_at": now,
                }
            )
        async with db.transaction(TenantScope.system_scope()) as session:
            for start in range(0, count, 1000):
                await session.execute(insert(WebhookDelivery), rows[start : start + 1000])
        dispatcher = WebhookDispatcher(
            db,
            vault,
            http,
            allow_loopback=True,
            retry_schedule=(5,),
            disable_after_seconds=3600,
            concurrency=concurrency,
            per_subscription=max(1, concurrency // subscriptions),
        )

        async def succeeded() -> int:
            async with db.session(TenantScope.system_scope()) as session:
                stmt = select(func.count()).where(
                    WebhookDelivery.status == DeliveryStatus.SUCCEEDED
                )
                return int((await session.execute(stmt)).scalar_one())

        try:
            if profile is not None:
                profile.enable()
            start = time.perf_counter()
            dispatcher.start()
            while await succeeded() < count:  # noqa: ASYNC110 (rows have no event to await)
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            if profile is not None:
                profile.disable()
        finally:
            await dispatcher.stop()
            await http.aclose()
            await vault.close()
            await db.dispose()
        return count / elapsed


async def run(args: argparse.Namespace) -> None:
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print("webhook dispatcher (2-core machine shared with other work: compare ratios only)")
    async with receiver() as url:
        await receiver_rate(url, 200, args.concurrency)  # warm-up
        base = await receiver_rate(url, args.deliveries, args.concurrency)
        print(f"  receiver alone           {base:8.0f} req/s   (1.00x)")
        for backend in backends:
            profile = cProfile.Profile() if args.profile else None
            async with database(backend) as db_url:
                rate = await dispatcher_rate(
                    db_url, url, args.deliveries, args.subscriptions, args.concurrency, profile
                )
            print(
                f"  dispatcher, {backend:<10}  {rate:8.0f} deliveries/s "
                f"({rate / base:.2f}x the receiver)"
            )
            if profile is not None:
                path = f"{args.profile}.{backend}"
                profile.dump_stats(path)
                pstats.Stats(path).sort_stats("tottime").print_stats(15)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench --dispatcher")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", default="")
    asyncio.run(run(parser.parse_args(argv)))
