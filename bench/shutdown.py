"""Live-server webhook benches (issue 15), each against real replica processes
(``studio-integrations serve``: every worker, as in production) on a PostgreSQL database made
for the run (and dropped after), a private redis-server, and a loopback receiver process
(``bench.receiver``) that logs each arrival's ``webhook-id``.

``python -m bench --shutdown [--runs 5] [--rate 100] [--grace 10]``
    SIGTERM under load: two replicas, one subscription to the receiver, a steady stream of
    events (``--rate``/s, emitted into the outbox as governed actions do); then ``--runs``
    times: SIGTERM replica A (restarted after). Per run: (a) A's exit time after the signal
    (limit: grace + 2 s); (b) how long after the signal the deliveries A abandoned (its
    attempts marked abandoned, leases released) reached the receiver from replica B (limit
    5 s); at the end (c) every event reached the receiver at least once, duplicates counted
    by webhook-id. The receiver answers after ``--delay`` s, and the first arrival of every
    ``--hold-every``-th webhook-id after ``--hold`` s (longer than a stopping replica waits),
    so sends are in flight, finished or abandoned, when the signal lands.

``python -m bench --shutdown --lag [--rate 100] [--seconds 30] [--replicas 1|2]
[--via http|emit] [--poll S]``
    Event -> delivery lag: ``registerProvider`` mutations over HTTP at ``--rate`` per second
    for ``--seconds`` (at most 48 in flight), or with ``--via emit`` events committed by this
    process, as by an API-only replica (``--wake``: each commit wakes the relays through the
    bus, as such a replica does; without it only their poll finds the events, ``--poll`` sets
    STUDIO_OUTBOX_POLL_SECONDS); p50/p99 of (delivery created_at - event
    occurred_at) and (arrival at the receiver - event occurred_at), and the replicas' CPU
    time per event. Limit: p99 <= 1 s.

``python -m bench --shutdown --feedback [--all-types]``
    The failure loop, bounded: 2 (then 3) subscriptions to IntegrationFailureRaised whose
    endpoint answers 500, one original failure; requests at the receiver at 10/20/30/40 s
    (must be flat after 30 s). ``--all-types``: also subscriptions to ``*`` and a
    ProviderRegistered original.

``BENCH_LOG_DIR=DIR`` keeps the replicas' logs.

Baselines printed with each: the receiver's own rate (the dispatcher's HTTP client posting
to it as fast as a dispatcher's pool allows), and the grace setting for times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from tests.support.backends import free_port
from tests.support.redis_server import private_redis

from bench.dispatcher import database, receiver, receiver_rate
from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.auth.tokens import mint_dev_token
from studio_integrations.core.context import ActionContext
from studio_integrations.events.bus import EventBus
from studio_integrations.events.catalog import BY_TYPE
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import (
    AuditEvent,
    WebhookDelivery,
    WebhookDeliveryAttempt,
)
from studio_integrations.settings import Settings

TENANT = "bench"
ABANDONED = "abandoned: the dispatcher stopped%"
CREATE_SUBSCRIPTION = """
mutation ($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { subscription { id } userErrors { code message } }
}"""
REGISTER_PROVIDER = """
mutation ($input: RegisterProviderInput!) {
  registerProvider(input: $input) { provider { id } userErrors { code message } }
}"""


def _ts(value: datetime) -> float:
    return value.timestamp()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the pieces: an environment, replicas, the receiver's log -----------------------------


@dataclass
class Environment:
    db_url: str
    redis_url: str
    state_dir: Path
    receiver_url: str
    grace: float
    namespace: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    signing_key: str = field(default_factory=lambda: uuid.uuid4().hex * 2)
    master_key: str = field(
        default_factory=lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
    )
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "STUDIO_DATABASE_URL": self.db_url,
                "STUDIO_BROADCAST_URL": self.redis_url,
                "STUDIO_BUS_NAMESPACE": self.namespace,
                "STUDIO_STATE_DIR": str(self.state_dir),
                "STUDIO_DEV_SIGNING_KEY": self.signing_key,
                "STUDIO_MASTER_KEY": self.master_key,
                "STUDIO_ALLOW_LOOPBACK_TARGETS": "true",
                "STUDIO_PORT": str(port),
                "STUDIO_LOG_LEVEL": "WARNING",
                "STUDIO_TENANT_MUTATIONS_PER_MINUTE": "0",
                "STUDIO_TOKEN_MUTATIONS_PER_MINUTE": "0",
                "STUDIO_SHUTDOWN_GRACE_SECONDS": f"{self.grace:g}",
                "STUDIO_WEBHOOK_SUBSCRIPTION_CONCURRENCY": "32",
            }
        )
        env.update(self.extra)
        return env

    def settings(self) -> Settings:
        return Settings(
            database_url=self.db_url,
            state_dir=self.state_dir,
            dev_signing_key=self.signing_key,  # type: ignore[arg-type]
        )

    def token(self) -> str:
        return mint_dev_token(self.settings(), tenant=TENANT, subject="bench", scopes=ALL_SCOPES)


class Replica:
    def __init__(self, name: str, environment: Environment) -> None:
        self.name = name
        self.environment = environment
        self.port = free_port()
        # BENCH_LOG_DIR keeps the replicas' logs after the run (else in the run's temp dir).
        logs = Path(os.environ.get("BENCH_LOG_DIR") or environment.state_dir)
        self.log = logs / f"replica-{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "studio_integrations.cli",
                "serve",
                env=self.environment.env(self.port),
                stdout=log,
                stderr=log,
            )
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                if self.proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
        raise RuntimeError(f"replica {self.name} did not become ready; see {self.log}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def terminate(self) -> float:
        """SIGTERM; seconds until the process exited."""
        assert self.proc is not None
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        await self.proc.wait()
        return time.perf_counter() - start

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Arrivals:
    """The receiver's log, fetched incrementally: ``webhook-id -> [arrival times]``."""

    def __init__(self, url: str) -> None:
        self._url = url.rsplit("/", 1)[0] + "/log"
        self._count = 0
        self.by_id: dict[str, list[float]] = defaultdict(list)
        self.total = 0

    async def refresh(self, client: httpx.AsyncClient) -> None:
        entries = (await client.get(self._url, params={"from": self._count})).json()
        self._count += len(entries)
        for arrived, webhook_id, _path in entries:
            self.by_id[webhook_id].append(arrived)
            self.total += 1


async def _graphql(
    client: httpx.AsyncClient, url: str, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


async def subscribe(
    client: httpx.AsyncClient, replica: Replica, token: str, endpoint: str, **over: Any
) -> str:
    doc: dict[str, Any] = {"eventType": "ProviderRegistered", "endpointUrl": endpoint}
    doc.update(over)
    data = await _graphql(client, replica.url, token, CREATE_SUBSCRIPTION, {"input": doc})
    payload = data["createWebhookSubscription"]
    if payload["userErrors"]:
        raise RuntimeError(payload["userErrors"])
    return str(payload["subscription"]["id"])


@contextlib.asynccontextmanager
async def environment(
    grace: float, *receiver_options: str, extra: dict[str, str] | None = None
) -> AsyncIterator[Environment]:
    with tempfile.TemporaryDirectory() as tmp:
        async with database("postgres") as db_url, receiver(*receiver_options) as url:
            with private_redis(Path(tmp)) as redis:
                yield Environment(
                    db_url=db_url,
                    redis_url=redis.url,
                    state_dir=Path(tmp),
                    receiver_url=url,
                    grace=grace,
                    extra=extra or {},
                )


class Emitter:
    """Events at a steady rate, emitted into the outbox as a governed action does (in its own
    transaction, from this process: the replicas' relays pick them up)."""

    def __init__(
        self,
        db: Database,
        rate: float,
        type: EventType = EventType.PROVIDER_REGISTERED,
        bus: EventBus | None = None,
    ):
        self._db = db
        # Given a bus, it wakes the relays after each commit, as an API-only replica does.
        self._bus = bus
        self._rate = rate
        self._type = type
        self.occurred: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def emit(self) -> str:
        ctx = ActionContext.system(TENANT)
        # The documented example (a failure of a run, not of a webhook delivery).
        data = dict(BY_TYPE[self._type.value].example)
        if self._type is EventType.INTEGRATION_FAILURE_RAISED:
            data.update(deliveryId=None, runId="run_bench")
        async with self._db.transaction(TenantScope.of(TENANT)) as session:
            envelope = emit_event(
                session,
                ctx,
                type=self._type,
                subject_type="Provider",
                subject_id="prov_bench",
                data=data,
            )
        self.occurred[envelope.id] = _ts(envelope.occurred_at)
        if self._bus is not None:
            await self._bus.wake_relays()
        return envelope.id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not self._stop.is_set():
            await self.emit()
            n += 1
            delay = start + n / self._rate - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


# --- SIGTERM under load -----------------------------------------------------------------


async def _abandoned(db: Database, since: float) -> list[tuple[str, float]]:
    """``(webhook-id, attempt started)`` of attempts abandoned by a stopping dispatcher."""
    async with db.session(TenantScope.system_scope()) as session:
        rows = await session.execute(
            select(WebhookDelivery.message_id, WebhookDeliveryAttempt.attempted_at)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookDeliveryAttempt.delivery_id)
            .where(WebhookDeliveryAttempt.error.like(ABANDONED))
        )
        return [(m, _ts(a)) for m, a in rows if _ts(a) >= since]


async def shutdown(args: argparse.Namespace) -> None:
    grace = args.grace
    print(
        f"SIGTERM under load x {args.runs}: 2 replicas, {args.rate:g} events/s, "
        f"STUDIO_SHUTDOWN_GRACE_SECONDS={grace:g}; receiver answers after {args.delay:g} s "
        f"(every {args.hold_every}th new webhook-id after {args.hold:g} s)"
    )
    options = ("--delay", str(args.delay), "--hold-every", str(args.hold_every))
    async with environment(grace, *options, "--hold", str(args.hold)) as env:
        base = await receiver_rate(env.receiver_url, 500, 32)
        print(
            f"  receiver alone: {base:7.0f} req/s with 32 in flight "
            f"(= 32 / {args.delay:g} s delay: the ceiling)"
        )
        a, b = Replica("A", env), Replica("B", env)
        db = Database(env.db_url)
        arrivals = Arrivals(env.receiver_url)
        emitter = Emitter(db, args.rate)
        results = []
        try:
            await asyncio.gather(a.start(), b.start())
            async with httpx.AsyncClient(timeout=30) as client:
                await subscribe(client, b, env.token(), env.receiver_url)
                emitter.start()
                seen_abandoned: set[str] = set()
                for run in range(1, args.runs + 1):
                    await asyncio.sleep(args.settle)
                    signalled = time.time()
                    exit_s = await a.terminate()
                    abandoned = [
                        (m, t)
                        for m, t in await _abandoned(db, signalled - 60)
                        if m not in seen_abandoned
                    ]
                    seen_abandoned.update(m for m, _ in abandoned)
                    # Each abandoned delivery's resend: its next arrival after A's own.
                    resent: dict[str, float] = {}
                    deadline = time.time() + 30
                    while time.time() < deadline:
                        await arrivals.refresh(client)
                        for m, started in abandoned:
                            later = [t for t in arrivals.by_id.get(m, []) if t >= started - 0.01]
                            if len(later) >= 2:
                                resent[m] = later[1]
                        if len(resent) == len(abandoned):
                            break
                        await asyncio.sleep(0.2)
                    lags = [resent[m] - signalled for m, _ in abandoned if m in resent]
                    worst = max(lags) if lags else 0.0
                    results.append((exit_s, len(abandoned), len(resent), worst))
                    print(
                        f"  run {run}: A exited {exit_s:5.2f} s after SIGTERM "
                        f"({exit_s / grace:.2f}x grace; limit {grace + 2:g} s); "
                        f"{len(abandoned)} in-flight sends abandoned and released, "
                        f"{len(resent)} resent by B, last {worst:5.2f} s after the signal "
                        f"(limit 5 s)"
                    )
                    await a.start()
                await stop_emitting(emitter, arrivals, client, results, grace)
        finally:
            await emitter.stop()
            await asyncio.gather(a.kill(), b.kill())
            await db.dispose()


async def stop_emitting(
    emitter: Emitter,
    arrivals: Arrivals,
    client: httpx.AsyncClient,
    results: list[tuple[float, int, int, float]],
    grace: float,
) -> None:
    await emitter.stop()
    deadline = time.time() + 120
    while time.time() < deadline:
        await arrivals.refresh(client)
        if all(m in arrivals.by_id for m in emitter.occurred):
            break
        await asyncio.sleep(0.5)
    emitted = len(emitter.occurred)
    lost = [m for m in emitter.occurred if m not in arrivals.by_id]
    got = [m for m in emitter.occurred if m in arrivals.by_id]
    dupes = sum(len(arrivals.by_id[m]) - 1 for m in got)
    twice = sum(1 for m in got if len(arrivals.by_id[m]) > 1)
    first = [arrivals.by_id[m][0] - emitter.occurred[m] for m in got]
    exits = [r[0] for r in results]
    resend = [r[3] for r in results if r[1]]
    print(
        f"  events {emitted}, reached the receiver {len(got)}, lost {len(lost)}; "
        f"duplicate requests {dupes} ({twice} webhook-ids more than once; "
        f"{sum(r[1] for r in results)} abandoned at a stop)"
    )
    print(
        f"  event -> first arrival: p50 {_pct(first, 0.5):.2f} s, p99 {_pct(first, 0.99):.2f} s, "
        f"max {max(first, default=0):.2f} s (a lease left behind would show as >= 60 s)"
    )
    print(
        f"  exits: max {max(exits):.2f} s = {max(exits) / grace:.2f}x grace "
        f"({'ok' if max(exits) <= grace + 2 else 'OVER'} grace + 2 s); resends: max "
        f"{max(resend, default=0):.2f} s ({'ok' if max(resend, default=0) <= 5 else 'OVER'} 5 s)"
        f"; {'none lost' if not lost else f'{len(lost)} LOST'}"
    )


# --- event -> delivery lag ----------------------------------------------------------------


def _provider(i: int) -> dict[str, Any]:
    return {
        "key": f"bench-{i}-{uuid.uuid4().hex[:6]}",
        "name": f"Bench {i}",
        "category": "HR",
        "capabilities": ["employees.read"],
        "authModes": ["BEARER_TOKEN"],
        "baseUrl": "https://bench.example/api",
        "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
    }


async def lag(args: argparse.Namespace) -> None:
    print(
        f"event -> delivery lag: {args.replicas} replica(s), "
        + (
            "registerProvider over HTTP"
            if args.via == "http"
            else f"events committed by the bench ({'waking' if args.wake else 'not waking'} "
            "the relays through the bus)"
        )
        + f" at {args.rate:g}/s for {args.seconds:g} s, 1 subscription"
    )
    extra = {"STUDIO_OUTBOX_POLL_SECONDS": f"{args.poll:g}"} if args.poll else {}
    async with environment(args.grace, extra=extra) as env:
        base = await receiver_rate(env.receiver_url, 2000, 32)
        poll = args.poll or Settings().outbox_poll_seconds
        print(f"  receiver alone: {base:7.0f} req/s (1.00x); relay poll interval {poll:g} s")
        servers = [Replica(name, env) for name in "AB"[: args.replicas]]
        server = servers[0]
        db = Database(env.db_url)
        try:
            await asyncio.gather(*(s.start() for s in servers))
            token = env.token()
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                await subscribe(client, server, token, env.receiver_url)
                for i in range(20):  # warm-up
                    await _graphql(
                        client, server.url, token, REGISTER_PROVIDER, {"input": _provider(i)}
                    )
                since = time.time()
                cpu0 = sum(s.cpu_seconds() for s in servers)
                loop = asyncio.get_running_loop()
                start = loop.time()
                total = round(args.rate * args.seconds)
                answered: list[float] = []
                failed = 0
                # At most this many requests in flight: queueing thousands inside httpx's pool
                # made this client the bottleneck (its pool scans its queue on every change).
                slots = asyncio.Semaphore(48)

                async def one(i: int) -> None:
                    nonlocal failed
                    t0 = time.perf_counter()
                    try:
                        url = servers[i % len(servers)].url
                        async with slots:
                            await _graphql(
                                client, url, token, REGISTER_PROVIDER, {"input": _provider(i)}
                            )
                        answered.append(time.perf_counter() - t0)
                    except Exception:
                        failed += 1

                if args.via == "emit":
                    # Committed by this process, as by an API-only replica: no relay is woken
                    # by the commit (only by its poll, or a wake from the bus).
                    bus = EventBus(env.redis_url, namespace=env.namespace)
                    await bus.connect()
                    emitter = Emitter(db, args.rate, bus=bus if args.wake else None)
                    emitter.start()
                    await asyncio.sleep(args.seconds)
                    await emitter.stop()
                    await bus.disconnect()
                    total = len(emitter.occurred)
                    answered = [0.0]
                else:
                    tasks = []
                    for i in range(total):
                        delay = start + i / args.rate - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        tasks.append(asyncio.create_task(one(100 + i)))
                    await asyncio.gather(*tasks)
                sent_for = loop.time() - start
                cpu = sum(s.cpu_seconds() for s in servers) - cpu0
                arrivals = Arrivals(env.receiver_url)
                async with db.session(TenantScope.system_scope()) as session:
                    rows = []
                    for _ in range(300):
                        rows = list(
                            await session.execute(
                                select(
                                    WebhookDelivery.message_id,
                                    WebhookDelivery.created_at,
                                    AuditEvent.occurred_at,
                                )
                                .join(AuditEvent, AuditEvent.id == WebhookDelivery.event_id)
                                .where(AuditEvent.occurred_at >= datetime.fromtimestamp(since, UTC))
                            )
                        )
                        await arrivals.refresh(client)
                        if len(rows) >= total - failed and all(
                            m in arrivals.by_id for m, _, _ in rows
                        ):
                            break
                        await session.rollback()
                        await asyncio.sleep(0.2)
            created = [_ts(c) - _ts(o) for _, c, o in rows]
            received = [arrivals.by_id[m][0] - _ts(o) for m, _, o in rows if m in arrivals.by_id]
        finally:
            await asyncio.gather(*(s.kill() for s in servers))
            await db.dispose()
    print(
        f"  {total} events in {sent_for:.1f} s ({total / sent_for:.0f}/s), {failed} failed; "
        f"answered p50 {statistics.median(answered) * 1e3:.0f} ms, "
        f"p99 {_pct(answered, 0.99) * 1e3:.0f} ms; server CPU {cpu / total * 1e3:.1f} ms per "
        f"event ({cpu / sent_for:.2f} cores over the run)"
    )
    for what, values in (("delivery created", created), ("received", received)):
        p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
        print(
            f"  event -> {what:<16} n={len(values):5d}  p50 {p50 * 1e3:6.0f} ms  "
            f"p99 {p99 * 1e3:6.0f} ms  max {max(values) * 1e3:6.0f} ms  "
            f"({p99 / poll:.2f}x the poll interval; {'ok' if p99 <= 1 else 'OVER'} 1 s)"
        )


# --- the failure loop ---------------------------------------------------------------------


async def feedback(args: argparse.Namespace) -> None:
    print(
        "failure loop: N subscriptions to IntegrationFailureRaised, endpoint answers 500, "
        "retrySchedule [1], one original failure; requests at the receiver"
    )
    cases = [(EventType.INTEGRATION_FAILURE_RAISED, n) for n in (2, 3)]
    # Subscriptions to every type, the original event a ProviderRegistered: the final
    # failures of its deliveries go to the other subscriptions (one generation), no further.
    cases += [(EventType.PROVIDER_REGISTERED, n) for n in (2, 3)] if args.all_types else []
    for original, subscribers in cases:
        every = original is not EventType.INTEGRATION_FAILURE_RAISED
        async with environment(args.grace, "--status", "500") as env:
            server = Replica("A", env)
            db = Database(env.db_url)
            try:
                await server.start()
                async with httpx.AsyncClient(timeout=30) as client:
                    for i in range(subscribers):
                        await subscribe(
                            client,
                            server,
                            env.token(),
                            f"{env.receiver_url}/{i}",
                            eventType="*" if every else "IntegrationFailureRaised",
                            retrySchedule=[1],
                        )
                    await asyncio.sleep(2)  # the subscriptions' own events: relayed first
                    emitter = Emitter(db, 1, original)
                    await emitter.emit()
                    start = time.perf_counter()
                    arrivals = Arrivals(env.receiver_url)
                    counts = []
                    for mark in (10, 20, 30, 40):
                        await asyncio.sleep(max(0.0, start + mark - time.perf_counter()))
                        await arrivals.refresh(client)
                        counts.append((arrivals.total, len(arrivals.by_id)))
            finally:
                await server.kill()
                await db.dispose()
        flat = counts[2] == counts[3]
        print(
            f"  {subscribers} subscriptions to {'*' if every else 'IntegrationFailureRaised'}, "
            f"original {original.value}: requests (webhook-ids) at 10/20/30/40 s: "
            + ", ".join(f"{n} ({ids})" for n, ids in counts)
            + f"  -> {'flat after 30 s' if flat else 'STILL RISING'}"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench --shutdown")
    parser.add_argument("--lag", action="store_true")
    parser.add_argument("--feedback", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--all-types", action="store_true", help="--feedback: also '*' subs")
    parser.add_argument("--replicas", type=int, choices=[1, 2], default=1)
    parser.add_argument("--via", choices=["http", "emit"], default="http")
    parser.add_argument("--poll", type=float, default=0, help="STUDIO_OUTBOX_POLL_SECONDS")
    parser.add_argument(
        "--wake", action="store_true", help="--via emit: wake the relays through the bus"
    )
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--grace", type=float, default=10)
    parser.add_argument("--settle", type=float, default=8)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--hold-every", type=int, default=50)
    parser.add_argument("--hold", type=float, default=12)
    args = parser.parse_args(argv)
    if args.lag:
        asyncio.run(lag(args))
    elif args.feedback:
        asyncio.run(feedback(args))
    else:
        asyncio.run(shutdown(args))
