"""The webhook dispatcher: sends due outbound deliveries, signed, and records each attempt.

The queue is the ``webhook_deliveries`` table. A claim is a short transaction that picks due
deliveries (PENDING or RETRYING, ``next_attempt_at`` reached, no live lease) with ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers with ``BEGIN IMMEDIATE``) and
stamps each with ``lease_until``; so replicas share the queue without sending a delivery
twice, and a replica that dies mid-delivery leaves a lease that expires, after which any
replica takes the delivery over. No transaction is held over the HTTP request: claim, send,
then record the outcome in a new transaction (``domain.webhooks.apply_attempt``). A delivery
is marked SUCCEEDED only after the receiver's 2xx, so a crash between the 2xx and the record
sends it again: at-least-once, with the same ``webhook-id``.

Each attempt: the signing secret's current version (and, for 24 h after a rotation, the
previous one) is read from the vault; the endpoint is checked and resolved now and the
request goes to the checked address (``domain.egress``: DNS rebinding cannot reach a private
address); Standard Webhooks headers with a fresh timestamp; 15 s timeout; redirects are not
followed; at most 4 KiB of the answer is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.domain import webhooks as domain
from studio_integrations.domain.context import SYSTEM_ACTOR
from studio_integrations.domain.egress import (
    EgressRefused,
    EgressUnresolvable,
    Resolver,
    check_target,
    resolve_target,
)
from studio_integrations.domain.enums import DeliveryStatus, FailureCategory
from studio_integrations.domain.signing import webhook_headers
from studio_integrations.events.bus import EventBus
from studio_integrations.events.envelope import EventEnvelope, EventSubject
from studio_integrations.ids import new_id
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import WebhookDelivery, WebhookSubscription
from studio_integrations.persistence.types import utcnow
from studio_integrations.telemetry import metrics
from studio_integrations.telemetry.tracing import current_trace_id, span
from studio_integrations.vault.base import SecretStore, parse_secret_ref

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
STOP_SECONDS = 5.0
Clock = Callable[[], datetime]
# Called after each recorded change of a delivery (for the live webhookDeliveryUpdated feed).
Notify = Callable[[WebhookDelivery], Awaitable[None]]
Change = Callable[[AsyncSession, WebhookDelivery, WebhookSubscription | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    tenant_id: str


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        vault: SecretStore,
        http: httpx.AsyncClient,
        *,
        allow_loopback: bool,
        retry_schedule: tuple[int, ...],
        disable_after_seconds: float,
        lease_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        batch_size: int = 20,
        timeout: float = TIMEOUT_SECONDS,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        resolver: Resolver | None = None,
        notify: Notify | None = None,
    ) -> None:
        self._db = db
        self._vault = vault
        self._http = http
        self._allow_loopback = allow_loopback
        self._policy = domain.AttemptPolicy(
            default_schedule=retry_schedule,
            disable_after=timedelta(seconds=disable_after_seconds),
            rng=rng or random.Random(),  # noqa: S311 (jitter, not cryptography)
        )
        self._lease = timedelta(seconds=lease_seconds)
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._timeout = timeout
        self.clock = clock
        self._resolver = resolver
        self._notify = notify
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0

    # --- lifecycle ---

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Cancel the loop; bounded, so a stuck receiver cannot hold up shutdown."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, STOP_SECONDS)
        self._task = None

    async def run(self) -> None:
        while True:
            try:
                count = await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook dispatcher: pass failed", exc_info=True)
                count = 0
            if count < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_seconds)
                self._wakeup.clear()

    # --- one pass ---

    async def dispatch_once(self) -> int:
        """Claim due deliveries and attempt each once (concurrently); returns how many."""
        claims = await self.claim()
        if claims:
            await asyncio.gather(*(self._deliver_safely(c) for c in claims))
        return len(claims)

    async def claim(self, limit: int | None = None) -> list[_Claim]:
        now = self.clock()
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            stmt = (
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.RETRYING)),
                    WebhookDelivery.next_attempt_at <= now,
                    or_(
                        WebhookDelivery.lease_until.is_(None),
                        WebhookDelivery.lease_until < now,
                    ),
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit or self._batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = list((await session.execute(stmt)).scalars())
            for row in rows:
                row.lease_until = now + self._lease
            return [_Claim(r.id, r.tenant_id) for r in rows]

    async def _deliver_safely(self, claim: _Claim) -> None:
        try:
            await self.deliver(claim)
        except Exception:
            # The lease expires and the delivery is tried again; nothing is lost.
            log.warning("webhook delivery %s: unexpected error", claim.id, exc_info=True)

    async def deliver(self, claim: _Claim) -> None:
        scope = TenantScope.of(claim.tenant_id)
        async with self._db.session(scope, background=True) as session:
            delivery = await session.get(WebhookDelivery, claim.id)
            subscription = (
                await session.get(WebhookSubscription, delivery.subscription_id)
                if delivery is not None and delivery.subscription_id
                else None
            )
        if delivery is None or delivery.status not in (
            DeliveryStatus.PENDING,
            DeliveryStatus.RETRYING,
        ):
            return
        attributes = {"studio.event_type": delivery.event_type, "studio.delivery_id": delivery.id}
        # The send continues the trace of the event the delivery carries.
        with (
            span("webhook.send", attributes, trace_id=delivery.trace_id),
            metrics.DISPATCH_IN_FLIGHT.track_inprogress(),
        ):
            await self._send(claim, delivery, subscription)

    async def _send(
        self, claim: _Claim, delivery: WebhookDelivery, subscription: WebhookSubscription | None
    ) -> None:
        if subscription is None or not subscription.active:
            reason = (
                "the subscription was deleted"
                if subscription is None
                else ("the subscription is inactive")
            )
            await self._record(
                claim, lambda s, d, sub: domain.abandon(s, d, reason, now=self.clock())
            )
            return
        result = await self._attempt(delivery, subscription)
        self.attempts += 1
        outcome = result.category.value if result.status is None and result.category else None
        outcome = outcome or metrics.status_class(result.status)
        metrics.DISPATCH_ATTEMPTS.labels(outcome).inc()
        log.info("webhook attempt", extra=_attempt_fields(delivery, result, outcome))
        url = _safe_url(subscription.endpoint_url)
        await self._record(
            claim,
            lambda s, d, sub: domain.apply_attempt(
                s, d, sub, result, self._policy, now=self.clock(), url=url
            ),
        )

    async def _record(self, claim: _Claim, change: Change) -> None:
        scope = TenantScope.of(claim.tenant_id)
        async with self._db.transaction(scope, background=True) as session:
            delivery = await session.get(WebhookDelivery, claim.id, with_for_update=True)
            if delivery is None:
                return
            subscription = (
                await session.get(WebhookSubscription, delivery.subscription_id)
                if delivery.subscription_id
                else None
            )
            await change(session, delivery, subscription)
        if self._notify is not None:
            try:
                await self._notify(delivery)
            except Exception:
                log.debug("webhook delivery update not published", exc_info=True)

    async def _secrets(self, subscription: WebhookSubscription, now: datetime) -> list[str]:
        ref = parse_secret_ref(subscription.signing_secret_ref)
        values = [
            (await self._vault.get_secret(ref.name, subscription.signing_secret_version)).value
        ]
        previous = subscription.previous_signing_secret_version
        until = subscription.previous_secret_valid_until
        if previous and until is not None and until > now:
            with contextlib.suppress(Exception):
                values.append((await self._vault.get_secret(ref.name, previous)).value)
        return values

    async def _attempt(
        self, delivery: WebhookDelivery, subscription: WebhookSubscription
    ) -> domain.AttemptResult:
        started = self.clock()
        t0 = time.perf_counter()
        host: str | None = None
        address: str | None = None
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        category: FailureCategory | None = None
        retry_after: float | None = None
        try:
            target = check_target(subscription.endpoint_url, allow_loopback=self._allow_loopback)
            host = target.host
            body = delivery.payload.encode()
            secrets_ = await self._secrets(subscription, started)
            headers = webhook_headers(secrets_, delivery.message_id, int(started.timestamp()), body)
            headers["Content-Type"] = "application/json"
            async with asyncio.timeout(self._timeout):
                resolved = await resolve_target(
                    target, allow_loopback=self._allow_loopback, resolver=self._resolver
                )
                address = resolved.address
                request = resolved.build_request(
                    self._http, "POST", headers=headers, content=body, timeout=self._timeout
                )
                response = await self._http.send(request, stream=True)
                try:
                    raw = await _read_capped(response, domain.EXCERPT_BYTES)
                finally:
                    await response.aclose()
            status = response.status_code
            category = domain.classify(status)
            if category is not None:
                phrase = httpx.codes.get_reason_phrase(status)
                error = f"HTTP {status}{' ' + phrase if phrase else ''}"
                if 300 <= status <= 399:
                    error += ": redirects are not followed"
                retry_after = _retry_after(response.headers.get("Retry-After"), started)
            excerpt = raw.decode(response.encoding or "utf-8", errors="replace") or None
        except EgressRefused as exc:
            category, error = FailureCategory.CONFIGURATION, f"egress refused: {exc.message}"
        except EgressUnresolvable as exc:
            category, error = FailureCategory.NETWORK, exc.message
        except (httpx.TimeoutException, TimeoutError):
            category, error = FailureCategory.TIMEOUT, f"no answer within {self._timeout:g} s"
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            detail = str(exc).strip()
            name = type(exc).__name__
            category, error = FailureCategory.NETWORK, f"{name}: {detail}" if detail else name
        except Exception as exc:  # the vault, a malformed reference, …
            category = FailureCategory.CONFIGURATION
            error = f"could not prepare the request: {type(exc).__name__}"
            log.warning("webhook delivery %s: %s", delivery.id, type(exc).__name__)
        latency = round((time.perf_counter() - t0) * 1000, 3)
        return domain.AttemptResult(
            started_at=started,
            url_host=host,
            address=address,
            status=status,
            latency_ms=latency,
            excerpt=excerpt,
            error=error,
            category=category,
            retry_after=retry_after,
        )


def _attempt_fields(
    delivery: WebhookDelivery, result: domain.AttemptResult, outcome: str
) -> dict[str, object]:
    """The log line of one attempt: ids, status and outcome; never the URL (its query may
    carry a token), the payload or the answer."""
    return {
        "tenant": delivery.tenant_id,
        "delivery_id": delivery.id,
        "event_type": delivery.event_type,
        "attempt": delivery.attempt_count + 1,
        "status": result.status,
        "outcome": outcome,
        "latency_ms": result.latency_ms,
    }


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _safe_url(url: str) -> str:
    """The endpoint without its query (which may carry a token) for the egress audit."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""
    return str(parsed.copy_with(query=None, fragment=None))


UPDATE_TYPE = "WebhookDeliveryUpdated"


class DeliveryFeed:
    """The per-tenant channel of delivery status changes (its own ``EventBus`` namespace),
    read by the ``webhookDeliveryUpdated`` subscription (``subscriptions.webhooks``). Status
    changes are not audit events: they are published after the change's commit, best effort
    (a change published while the bus is down is not pushed; the delivery log has it)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.bus = EventBus(url, namespace=f"{namespace}.webhooks")

    async def connect(self) -> None:
        await self.bus.connect()

    async def disconnect(self) -> None:
        await self.bus.disconnect()

    async def publish(self, row: WebhookDelivery) -> None:
        envelope = EventEnvelope(
            id=new_id("AuditEvent"),
            type=UPDATE_TYPE,
            tenant_id=row.tenant_id,
            occurred_at=utcnow(),
            actor=SYSTEM_ACTOR,
            trace_id=current_trace_id(),  # the send's trace (the event's)
            subject=EventSubject(type="WebhookDelivery", id=row.id),
            data={
                "status": row.status.value,
                "direction": row.direction.value,
                "subscriptionId": row.subscription_id,
            },
        )
        try:
            await self.bus.publish(row.tenant_id, envelope.to_json())
        except Exception:
            log.debug("delivery update not published", exc_info=True)
