"""The per-process services the app wires together: database, bus, token verifier, outbox
relay, secret store and the outbound HTTP client."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from studio_integrations.auth.request_limits import (
    MemoryRateLimiter,
    RateLimiter,
    SubscriptionSlots,
    make_rate_limiter,
)
from studio_integrations.auth.tokens import TokenVerifier, make_verifier
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.domain.webhooks import WebhookFanout
from studio_integrations.events.bus import EventBus
from studio_integrations.events.feeds import DeliveryFeed
from studio_integrations.events.outbox import STRICT_EVENTS_KEY, wake_on_commit
from studio_integrations.outbound.provider_calls import ProviderCaller
from studio_integrations.persistence.db import Database
from studio_integrations.settings import Settings
from studio_integrations.subscriptions.hub import FanoutHub
from studio_integrations.telemetry.tracing import instrument_client, instrument_engine
from studio_integrations.vault.base import SecretStore
from studio_integrations.vault.factory import make_secret_store
from studio_integrations.workers.health_prober import HealthProber
from studio_integrations.workers.outbox_relay import OutboxRelay
from studio_integrations.workers.rotation_scheduler import RotationScheduler
from studio_integrations.workers.webhook_dispatcher import WebhookDispatcher

log = logging.getLogger(__name__)


# Outbound calls (provider APIs, webhook receivers): one pooled client per process. Redirects
# are not followed: a redirect could lead a request to an address the egress checks refused.
# Environment proxies are ignored: requests carry the checked IP (see ``domain.egress``), and
# a proxy would be handed that IP and verify TLS against it instead of the provider's name.
OUTBOUND_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
OUTBOUND_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification context, made once: loading the CA bundle costs ~0.2 s,
    and a context is safe to share between clients."""
    return httpx.create_ssl_context()


def outbound_client() -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        verify=_tls_context(),
        timeout=OUTBOUND_TIMEOUT,
        limits=OUTBOUND_LIMITS,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "studio-integrations"},
    )
    instrument_client(client)  # client spans, when tracing is on
    return client


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: EventBus
    verifier: TokenVerifier
    relay: OutboxRelay
    vault: SecretStore
    http: httpx.AsyncClient
    provider_caller: ProviderCaller
    # Outbound webhooks: the dispatcher (fed by the relay's fan-out sink) and the live feed
    # of delivery status changes.
    webhook_dispatcher: WebhookDispatcher
    webhook_feed: DeliveryFeed
    # Circuit, health and escalation thresholds, passed to every action that records a run
    # or a failure (tests replace it, e.g. with a clock they move).
    health_policy: HealthPolicy
    # Abuse limits: rate budgets (shared through Redis when the bus is Redis) and the
    # per-tenant count of live WebSocket operations in this process.
    rate_limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    subscription_slots: SubscriptionSlots = field(default_factory=SubscriptionSlots)
    # The credential rotation scheduler, made by ``start()`` (it needs a running loop).
    rotation_scheduler: RotationScheduler | None = None
    # External health: the prober and the subscriptions' fan-out hub, made by ``start()``.
    health_prober: HealthProber | None = None
    hub: FanoutHub | None = None
    # The wake an API-only replica sends the relays after its commits (``_wake_other_relays``).
    _waking: bool = False
    _wake_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.database_url)
        instrument_engine(db.engine.sync_engine)  # statement spans, when tracing is on
        # Outside production an event whose data does not match its documented schema is an
        # error (events.catalog), so the suite catches drift between the two.
        db.session_info[STRICT_EVENTS_KEY] = settings.environment != "production"
        bus = EventBus(settings.broadcast_url, namespace=settings.bus_namespace)
        http = outbound_client()
        vault = make_secret_store(settings, db)
        feed = DeliveryFeed(settings.broadcast_url, settings.bus_namespace)
        health_policy = HealthPolicy.from_settings(settings)
        # Request budgets and per-subscription webhook rates: in Redis (shared by every
        # replica) when the bus is Redis.
        rate_limiter = make_rate_limiter(settings.broadcast_url, namespace=settings.bus_namespace)
        dispatcher = WebhookDispatcher(
            db,
            vault,
            http,
            allow_loopback=settings.allow_loopback_targets,
            retry_schedule=settings.webhook_retry_schedule,
            disable_after_seconds=settings.webhook_disable_after_seconds,
            lease_seconds=settings.webhook_lease_seconds,
            poll_seconds=settings.webhook_poll_seconds,
            concurrency=settings.webhook_concurrency,
            per_subscription=settings.webhook_subscription_concurrency,
            notify=feed.publish,
            health=health_policy,
            rate_limiter=rate_limiter,
        )
        # Each published event becomes deliveries for matching subscriptions, in the relay's
        # transaction (at-least-once; never lost between publishing and enqueueing).
        relay = OutboxRelay(
            db,
            bus,
            poll_seconds=settings.outbox_poll_seconds,
            sinks=[WebhookFanout(wake=dispatcher.wake)],
        )
        return cls(
            settings=settings,
            db=db,
            bus=bus,
            verifier=make_verifier(settings),
            relay=relay,
            vault=vault,
            http=http,
            # One per process: it holds the OAuth2 token cache.
            provider_caller=ProviderCaller(http, allow_loopback=settings.allow_loopback_targets),
            webhook_dispatcher=dispatcher,
            webhook_feed=feed,
            health_policy=health_policy,
            rate_limiter=rate_limiter,
        )

    def _wake_other_relays(self) -> None:
        """After a commit with events: one ``EventBus.wake_relays`` at a time; commits made
        before it went out share it (those after it get another)."""
        if self._waking:
            return
        self._waking = True

        async def send() -> None:
            self._waking = False
            await self.bus.wake_relays()

        task = asyncio.get_running_loop().create_task(send())
        self._wake_tasks.add(task)
        task.add_done_callback(self._wake_tasks.discard)

    def live_subscribers(self, tenant_id: str) -> int:
        """This process's live subscriptions to one tenant's events (metrics, tests)."""
        return self.hub.subscribers(tenant_id) if self.hub is not None else 0

    def feed_subscribers(self, tenant_id: str) -> int:
        """This process's live ``webhookDeliveryUpdated`` subscriptions of one tenant."""
        hub = self.hub
        return hub.subscribers(tenant_id, bus=self.webhook_feed.bus) if hub is not None else 0

    async def start(self) -> None:
        """Connect, then start the workers ``settings.workers`` names (all by default)."""
        workers = self.settings.workers
        await self.bus.connect()
        # A commit with events wakes this process's relay; with no relay here (an API-only
        # replica), the other replicas' relays, through the bus.
        relays = "relay" in workers
        wake_on_commit(self.db, self.relay.wake if relays else self._wake_other_relays)
        if relays:
            self.relay.start()
        self.rotation_scheduler = RotationScheduler(
            self.db,
            self.vault,
            self.provider_caller,
            interval_seconds=self.settings.rotation_scheduler_interval_seconds,
            lease=timedelta(seconds=self.settings.rotation_lease_seconds),
            policy=self.health_policy,
        )
        if "scheduler" in workers:
            self.rotation_scheduler.start()
        await self.webhook_feed.connect()
        if "dispatcher" in workers:
            self.webhook_dispatcher.start()
        self._start_health(prober="prober" in workers)

    def _start_health(self, *, prober: bool) -> None:
        self.hub = FanoutHub(self.bus, queue_size=self.settings.subscription_queue_size)
        self.health_prober = HealthProber(
            self.db,
            self.vault,
            self.provider_caller,
            interval=self.settings.probe_interval_seconds,
            timeout=self.settings.probe_timeout_seconds,
            concurrency=self.settings.probe_concurrency,
            policy=self.health_policy,
        )
        if prober:
            self.health_prober.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stop within ``grace`` (default ``SHUTDOWN_GRACE_SECONDS``): every worker stops at
        once, each bounded (one that does not stop in time is cancelled, and its task
        cancelled again should it swallow a cancellation: ``asyncio.wait_for`` can on 3.11,
        NOTES.md); the dispatcher gets most of the time to finish its sends and release the
        leases of the rest; then connections close, bounded by what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (grace or self.settings.shutdown_grace_seconds)

        def left(share: float = 1.0) -> float:
            return max(0.1, (deadline - loop.time()) * share)

        workers: list[tuple[str, Awaitable[Any], asyncio.Task[Any] | None]] = [
            ("outbox relay", self.relay.stop(), getattr(self.relay, "_task", None)),
            (
                "webhook dispatcher",
                self.webhook_dispatcher.stop(left(0.7)),
                getattr(self.webhook_dispatcher, "_task", None),
            ),
        ]
        if self.health_prober is not None:
            workers.append(
                (
                    "health prober",
                    self.health_prober.stop(left(0.5)),
                    getattr(self.health_prober, "_task", None),
                )
            )
        if self.hub is not None:
            workers.append(("subscription hub", self.hub.close(), None))
        if self.rotation_scheduler is not None:
            workers.append(
                (
                    "rotation scheduler",
                    self.rotation_scheduler.stop(left(0.5)),
                    getattr(self.rotation_scheduler, "_task", None),
                )
            )
        await asyncio.gather(
            *(bounded(step, left(0.8), what, task=task) for what, step, task in workers)
        )
        steps: list[tuple[str, Awaitable[Any]]] = [
            ("bus", self.bus.disconnect()),
            ("webhook feed", self.webhook_feed.disconnect()),
            ("vault", self.vault.close()),
            ("outbound HTTP", self.http.aclose()),
            ("rate limiter", self.rate_limiter.aclose()),
        ]
        aclose = getattr(self.verifier, "aclose", None)
        if aclose is not None:
            steps.append(("token verifier", aclose()))
        await asyncio.gather(*(bounded(step, left(0.8), what) for what, step in steps))
        await bounded(self.db.dispose(), left(), "database")


async def bounded(
    step: Awaitable[Any], seconds: float, what: str, *, task: asyncio.Task[Any] | None = None
) -> None:
    """Run a shutdown step for at most ``seconds``; then cancel it, and ``task`` (the worker's
    loop) if it is still running. Never raises: shutdown goes on whatever one step does."""
    runner = asyncio.ensure_future(step)
    done, _ = await asyncio.wait([runner], timeout=seconds)
    if not done:
        log.warning("shutdown: %s did not stop within %.1f s; cancelled", what, seconds)
        runner.cancel()
        await asyncio.wait([runner], timeout=0.5)
    elif not runner.cancelled() and runner.exception() is not None:
        log.warning("shutdown: %s failed", what, exc_info=runner.exception())
    for _ in range(5):  # a loop that swallowed a cancellation gets another
        if task is None or task.done():
            break
        task.cancel()
        await asyncio.wait([task], timeout=0.2)
