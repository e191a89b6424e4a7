"""The webhook dispatcher: sends due outbound deliveries, signed, and records each attempt.

The queue is the ``webhook_deliveries`` table. A claim is one short transaction that picks a
batch of due deliveries (PENDING or RETRYING, ``next_attempt_at`` reached, no live lease)
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers with ``BEGIN
IMMEDIATE``), stamps each with ``lease_until`` and records its attempt *before* the request
goes out (``domain.webhooks.begin_attempt``): a replica killed mid-send leaves the attempt in
the egress audit, and a lease that expires, after which any replica takes the delivery over.

No transaction is held over a request. Claimed deliveries go to a bounded pool of concurrent
sends sharing the process's HTTP connection pool; each subscription has at most
``per_subscription`` sends in flight (a claim skips saturated subscriptions, so one slow
endpoint cannot take the whole pool). Outcomes are written in batches, one transaction per
batch (``domain.webhooks.apply_attempt``). A delivery is marked SUCCEEDED only after the
receiver's 2xx, so a crash between the 2xx and the record sends it again: at-least-once,
with the same ``webhook-id``.

Rate limits: a subscription with ``max_deliveries_per_second`` (``maxDeliveriesPerSecond``)
draws one token per send from a token bucket of that capacity refilled at that rate per
second (``auth.request_limits``: a burst of up to the rate, then the rate). The bucket is the
``RateLimiter`` the process's ``Services`` hold: in Redis when the bus is Redis, so every
replica draws from the same one, else in this process. A claim takes a token for each due
delivery of a limited subscription, in the claim's order; from the first refusal on, that
subscription's deliveries in the batch are deferred, not attempted: ``next_attempt_at`` moves
to when the bucket will hold a token again (the limiter's ``retry_after``), with no lease,
no attempt row and no change to the attempt count, so the next claims pass over them until
then; a batch filled by deferrals is followed by another claim at once, so a limited
subscription's backlog does not hold the deliveries behind it back until the next poll. The
deliveries one claim defers share one due time, so they keep their order (the claim's
tie-break is the id). A token taken by a claim whose transaction then fails is lost (the
subscription sends a little less, never more). When Redis cannot be reached the limiter
lets sends through (logged), as it does for API requests.

Each attempt: the signing secret's current version (and, for 24 h after a rotation, the
previous one) from the vault (versions are immutable, so values are cached for
``SECRET_TTL_SECONDS``); the endpoint is checked and resolved now and the request goes to the
checked address (``domain.egress``: DNS rebinding cannot reach a private address); Standard
Webhooks headers with a fresh timestamp; 15 s timeout; redirects are not followed; at most
4 KiB of the answer is kept.

Stopping (``stop(grace)``): no new claims; sends in flight get until the deadline to finish
and be recorded; those still running are cancelled and their leases released at once (the
attempt stays in the audit as abandoned), so another replica resends them without waiting
for the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.auth.request_limits import Budget, MemoryRateLimiter, RateLimiter
from studio_integrations.core.clock import Clock, utcnow
from studio_integrations.core.enums import DeliveryStatus, FailureCategory
from studio_integrations.domain import webhooks as domain
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.outbound.egress import (
    EgressRefused,
    EgressUnresolvable,
    Resolver,
    check_target,
    resolve_target,
)
from studio_integrations.outbound.responses import read_capped, retry_after_seconds
from studio_integrations.outbound.signing import webhook_headers
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import (
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from studio_integrations.telemetry import metrics
from studio_integrations.telemetry.tracing import span
from studio_integrations.vault.base import SecretStore, parse_secret_ref
from studio_integrations.workers.stopping import finish

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
STOP_SECONDS = 5.0
SECRET_TTL_SECONDS = 30.0
# How long the result writer waits to gather a batch; outcomes are recorded within this.
RECORD_LINGER_SECONDS = 0.02
# Called after each recorded change of a delivery (for the live webhookDeliveryUpdated feed).
Notify = Callable[[WebhookDelivery], Awaitable[None]]
Change = Callable[[AsyncSession, WebhookDelivery, WebhookSubscription | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Target:
    """What a send needs of its subscription, read in the claim's transaction."""

    endpoint_url: str
    secret_ref: str
    secret_version: str | None
    previous_version: str | None
    previous_valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    tenant_id: str
    subscription_id: str | None = None
    message_id: str = ""
    payload: str = ""
    # The attempt recorded at claim time; None when the delivery is to be abandoned (its
    # subscription is gone or inactive).
    attempt_id: str | None = None
    target: _Target | None = None
    lease_until: datetime | None = None
    trace_id: str | None = None  # the event's trace: the send continues it
    event_type: str = ""
    attempt_number: int = 0


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
        batch_size: int = 100,
        concurrency: int = 32,
        per_subscription: int = 8,
        timeout: float = TIMEOUT_SECONDS,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        resolver: Resolver | None = None,
        notify: Notify | None = None,
        health: HealthPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._db = db
        # Per-subscription delivery rates (``Services.rate_limiter``: shared by every replica
        # when the bus is Redis).
        self.rate_limiter: RateLimiter = rate_limiter or MemoryRateLimiter()
        self._health = health or HealthPolicy()
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
        self._concurrency = concurrency
        self._per_subscription = per_subscription
        self._timeout = timeout
        self.clock = clock
        self._resolver = resolver
        self._notify = notify
        self._wakeup = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stopping = False
        # Sends in flight (by delivery id) and the count per subscription.
        self._inflight: dict[str, tuple[_Claim, asyncio.Task[None]]] = {}
        self._per_sub: dict[str, int] = {}
        self._results: asyncio.Queue[tuple[_Claim, domain.AttemptResult]] = asyncio.Queue()
        self._secret_cache: dict[tuple[str, str], tuple[float, asyncio.Future[str]]] = {}
        self.attempts = 0
        # Due deliveries the last claim deferred (rate limits): they filled part of its batch.
        self._deferred = 0

    # --- lifecycle ---

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._stopping = False
        self._writer = asyncio.create_task(self._write_results(), name="webhook-results")
        self._task = asyncio.create_task(self.run(), name="webhook-dispatcher")

    async def stop(self, grace: float = STOP_SECONDS) -> None:
        """Stop within ``grace`` seconds: no new claims; sends in flight may finish and are
        recorded until the deadline; the rest are cancelled and their leases released, so
        another replica resends them at once. Never waits with ``asyncio.wait_for`` (it can
        swallow a cancellation on 3.11, NOTES.md)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # The last 40 % is kept for recording what finished and releasing the rest.
        sends_deadline = deadline - grace * 0.4
        self._stopping = True
        self._wakeup.set()
        self._slot_freed.set()
        if self._task is not None:
            await finish(self._task, grace * 0.1)
            self._task = None
        sends = [task for _, task in self._inflight.values()]
        if sends:
            await asyncio.wait(sends, timeout=max(0.0, sends_deadline - loop.time()))
        abandoned = [claim for claim, task in list(self._inflight.values()) if not task.done()]
        for _, task in list(self._inflight.values()):
            task.cancel()
        if sends:
            await asyncio.wait(sends, timeout=min(0.5, max(0.01, deadline - loop.time())))
        if self._writer is not None:
            # Record what finished, then stop the writer.
            await finish(
                asyncio.create_task(self._drain_results()), max(0.01, deadline - loop.time())
            )
            await finish(self._writer, 0.1)
            self._writer = None
        if abandoned:
            await finish(
                asyncio.create_task(self.release(abandoned)), max(0.01, deadline - loop.time())
            )

    async def run(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._inflight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                claims = await self.claim(min(free, self._batch_size))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook dispatcher: claim failed", exc_info=True)
                claims, self._deferred = [], 0  # rolled back: wait for the poll
            for claim in claims:
                self._spawn(claim)
            # A batch filled by deferred deliveries is not the end of what is due: claim on.
            seen = len(claims) + self._deferred
            if seen < min(free, self._batch_size) and not self._stopping:
                # Nothing more is due (or every due delivery's subscription is saturated):
                # wait for a wake-up, a freed slot of a saturated subscription, or the poll.
                self._slot_freed.clear()
                waits = [asyncio.ensure_future(self._wakeup.wait())]
                if claims or self._inflight:
                    waits.append(asyncio.ensure_future(self._slot_freed.wait()))
                try:
                    await asyncio.wait(
                        waits, timeout=self._poll_seconds, return_when="FIRST_COMPLETED"
                    )
                finally:
                    for w in waits:
                        w.cancel()
                self._wakeup.clear()

    def _spawn(self, claim: _Claim) -> None:
        task = asyncio.create_task(self._send_and_queue(claim))
        self._inflight[claim.id] = (claim, task)
        if claim.subscription_id is not None:
            self._per_sub[claim.subscription_id] = self._per_sub.get(claim.subscription_id, 0) + 1

    def _done(self, claim: _Claim) -> None:
        self._inflight.pop(claim.id, None)
        sub = claim.subscription_id
        if sub is not None:
            left = self._per_sub.get(sub, 1) - 1
            if left <= 0:
                self._per_sub.pop(sub, None)
            else:
                self._per_sub[sub] = left
        self._slot_freed.set()

    async def _send_and_queue(self, claim: _Claim) -> None:
        try:
            if claim.attempt_id is None:
                await self._abandon(claim)
                return
            result = await self._attempt(claim)
            self.attempts += 1
            self._results.put_nowait((claim, result))
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and the delivery is tried again; nothing is lost.
            log.warning("webhook delivery %s: unexpected error", claim.id, exc_info=True)
        finally:
            self._done(claim)

    async def _write_results(self) -> None:
        while True:
            first = await self._results.get()
            await asyncio.sleep(RECORD_LINGER_SECONDS)
            batch = [first]
            while not self._results.empty() and len(batch) < 500:
                batch.append(self._results.get_nowait())
            await self._record_safely(batch)

    async def _drain_results(self) -> None:
        batch: list[tuple[_Claim, domain.AttemptResult]] = []
        while not self._results.empty():
            batch.append(self._results.get_nowait())
        if batch:
            await self._record_safely(batch)

    async def _record_safely(self, batch: list[tuple[_Claim, domain.AttemptResult]]) -> None:
        try:
            await self.record(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("webhook results: batch not recorded; one by one", exc_info=True)
            for item in batch:
                try:
                    await self.record([item])
                except Exception:
                    log.warning("webhook delivery %s: not recorded", item[0].id, exc_info=True)

    # --- one pass (tests and the replica test's worker process drive these by hand) ---

    async def dispatch_once(self) -> int:
        """Claim due deliveries, attempt each once (concurrently) and record the outcomes in
        one transaction; returns how many were claimed."""
        claims = await self.claim()
        if not claims:
            return 0
        outcomes = await asyncio.gather(*(self._attempt_safely(c) for c in claims))
        results = [(c, r) for c, r in zip(claims, outcomes, strict=True) if r is not None]
        if results:
            await self._record_safely(results)
        return len(claims)

    async def deliver(self, claim: _Claim) -> None:
        result = await self._attempt_safely(claim)
        if result is not None:
            await self.record([(claim, result)])

    async def _attempt_safely(self, claim: _Claim) -> domain.AttemptResult | None:
        try:
            if claim.attempt_id is None:
                await self._abandon(claim)
                return None
            result = await self._attempt(claim)
            self.attempts += 1
            return result
        except Exception:
            log.warning("webhook delivery %s: unexpected error", claim.id, exc_info=True)
            return None

    async def claim(self, limit: int | None = None) -> list[_Claim]:
        """Lease a batch of due deliveries and record their attempts, in one transaction."""
        now = self.clock()
        lease_until = now + self._lease
        self._deferred = 0
        saturated = [s for s, n in self._per_sub.items() if n >= self._per_subscription]
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
            if saturated:
                stmt = stmt.where(WebhookDelivery.subscription_id.not_in(saturated))
            rows = list((await session.execute(stmt)).scalars())
            if not rows:
                return []
            sub_ids = {r.subscription_id for r in rows if r.subscription_id}
            subs = {
                s.id: s
                for s in (
                    await session.execute(
                        select(WebhookSubscription).where(WebhookSubscription.id.in_(sub_ids))
                    )
                ).scalars()
            }
            taken: dict[str, int] = {}
            # Limited subscriptions refused a token in this claim: when their next one comes.
            deferred: dict[str, datetime] = {}
            claims: list[_Claim] = []
            for row in rows:
                sub = subs.get(row.subscription_id or "")
                if sub is not None and sub.active:
                    count = self._per_sub.get(sub.id, 0) + taken.get(sub.id, 0)
                    if count >= self._per_subscription:
                        continue  # left unleased: the next claim takes it
                    due = deferred.get(sub.id) or await self._rate_wait(sub, now)
                    if due is not None:
                        # Deferred, not attempted: no lease, no attempt. Every later one of
                        # this subscription in the batch too (asking again could let a
                        # later delivery overtake this one).
                        deferred[sub.id] = due
                        row.next_attempt_at = due
                        self._deferred += 1
                        continue
                    taken[sub.id] = taken.get(sub.id, 0) + 1
                row.lease_until = lease_until
                if sub is None or not sub.active:
                    claims.append(_Claim(row.id, row.tenant_id, row.subscription_id))
                    continue
                attempt = domain.begin_attempt(
                    session, row, started_at=now, url=_safe_url(sub.endpoint_url)
                )
                claims.append(
                    _Claim(
                        id=row.id,
                        tenant_id=row.tenant_id,
                        subscription_id=sub.id,
                        message_id=row.message_id,
                        payload=row.payload,
                        attempt_id=attempt.id,
                        target=_Target(
                            endpoint_url=sub.endpoint_url,
                            secret_ref=sub.signing_secret_ref,
                            secret_version=sub.signing_secret_version,
                            previous_version=sub.previous_signing_secret_version,
                            previous_valid_until=sub.previous_secret_valid_until,
                        ),
                        lease_until=lease_until,
                        trace_id=row.trace_id,
                        event_type=row.event_type,
                        attempt_number=row.attempt_count,
                    )
                )
            return claims

    async def _rate_wait(self, sub: WebhookSubscription, now: datetime) -> datetime | None:
        """None when ``sub`` may send now (a token taken, or no limit); else when it may."""
        rate = sub.max_deliveries_per_second
        if not rate:
            return None
        budget = Budget(
            kind="subscription", key=f"webhook.{sub.id}", capacity=rate, per_seconds=1.0
        )
        decision = await self.rate_limiter.take([budget])
        if decision.allowed:
            return None
        # At least a millisecond, so a deferred delivery is never due again at once.
        return now + timedelta(seconds=max(decision.retry_after, 0.001))

    async def release(self, claims: Sequence[_Claim]) -> None:
        """Give up claims whose sends were abandoned (shutdown): each lease is released at
        once, if still ours, and the attempt stays in the audit, marked abandoned."""
        now = self.clock()
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            await domain.release_claims(
                session,
                [(c.id, c.lease_until, c.attempt_id) for c in claims],
                now=now,
                reason="abandoned: the dispatcher stopped before the answer came",
            )

    async def _abandon(self, claim: _Claim) -> None:
        reason = (
            "the subscription was deleted"
            if claim.subscription_id is None
            else "the subscription is inactive"
        )

        async def change(
            session: AsyncSession, delivery: WebhookDelivery, _sub: WebhookSubscription | None
        ) -> None:
            if delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
                await domain.abandon(
                    session, delivery, reason, health=self._health, now=self.clock()
                )

        await self._record_one(claim, change)

    async def _record_one(self, claim: _Claim, change: Change) -> None:
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
        await self._notify_all([delivery])

    async def record(self, batch: Sequence[tuple[_Claim, domain.AttemptResult]]) -> None:
        """Record the outcomes of many attempts in one transaction."""
        now = self.clock()
        ids = sorted({c.id for c, _ in batch})
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            rows = {
                d.id: d
                for d in (
                    await session.execute(
                        select(WebhookDelivery)
                        .where(WebhookDelivery.id.in_(ids))
                        .order_by(WebhookDelivery.id)
                        .with_for_update()
                    )
                ).scalars()
            }
            sub_ids = {d.subscription_id for d in rows.values() if d.subscription_id}
            subs = {
                s.id: s
                for s in (
                    await session.execute(
                        select(WebhookSubscription).where(WebhookSubscription.id.in_(sub_ids))
                    )
                ).scalars()
            }
            attempt_ids = [c.attempt_id for c, _ in batch if c.attempt_id]
            attempts = {
                a.id: a
                for a in (
                    await session.execute(
                        select(WebhookDeliveryAttempt).where(
                            WebhookDeliveryAttempt.id.in_(attempt_ids)
                        )
                    )
                ).scalars()
            }
            changed: list[WebhookDelivery] = []
            for claim, result in batch:
                delivery = rows.get(claim.id)
                if delivery is None:
                    continue
                await domain.apply_attempt(
                    session,
                    delivery,
                    subs.get(delivery.subscription_id or ""),
                    result,
                    self._policy,
                    health=self._health,
                    now=now,
                    url=None,
                    attempt=attempts.get(claim.attempt_id or ""),
                )
                changed.append(delivery)
        await self._notify_all(changed)

    async def _notify_all(self, rows: Sequence[WebhookDelivery]) -> None:
        if self._notify is None or not rows:
            return
        notify = self._notify

        async def one(row: WebhookDelivery) -> None:
            try:
                await notify(row)
            except Exception:
                log.debug("webhook delivery update not published", exc_info=True)

        await asyncio.gather(*(one(r) for r in rows))

    async def _secret(self, name: str, version: str | None) -> str:
        """A secret version's value; versions never change, so a value is reused for
        ``SECRET_TTL_SECONDS`` (a version disabled in the vault stops signing after that),
        and concurrent sends share one vault read."""
        key = (name, version or "")
        now = time.monotonic()
        cached = self._secret_cache.get(key)
        if cached is not None and (not cached[1].done() or now - cached[0] < SECRET_TTL_SECONDS):
            return await asyncio.shield(cached[1])
        if len(self._secret_cache) > 10_000:
            self._secret_cache.clear()
        future: asyncio.Future[str] = asyncio.ensure_future(self._read_secret(name, version))
        self._secret_cache[key] = (now, future)
        try:
            return await asyncio.shield(future)
        except Exception:
            self._secret_cache.pop(key, None)
            raise

    async def _read_secret(self, name: str, version: str | None) -> str:
        return (await self._vault.get_secret(name, version)).value

    async def _secrets(self, target: _Target, now: datetime) -> list[str]:
        ref = parse_secret_ref(target.secret_ref)
        values = [await self._secret(ref.name, target.secret_version)]
        previous = target.previous_version
        until = target.previous_valid_until
        if previous and until is not None and until > now:
            with contextlib.suppress(Exception):
                values.append(await self._secret(ref.name, previous))
        return values

    async def _attempt(self, claim: _Claim) -> domain.AttemptResult:
        """One send, in a span continuing the event's trace (its ``traceparent`` goes out with
        the request), counted by outcome and logged without URL, payload or answer."""
        attributes = {"studio.event_type": claim.event_type, "studio.delivery_id": claim.id}
        with span("webhook.send", attributes, trace_id=claim.trace_id):
            with metrics.DISPATCH_IN_FLIGHT.track_inprogress():
                result = await self._send(claim)
            outcome = result.category.value if result.status is None and result.category else None
            outcome = outcome or metrics.status_class(result.status)
            metrics.DISPATCH_ATTEMPTS.labels(outcome).inc()
            log.info(
                "webhook attempt",
                extra={
                    "tenant": claim.tenant_id,
                    "delivery_id": claim.id,
                    "event_type": claim.event_type,
                    "attempt": claim.attempt_number,
                    "status": result.status,
                    "outcome": outcome,
                    "latency_ms": result.latency_ms,
                },
            )
        return result

    async def _send(self, claim: _Claim) -> domain.AttemptResult:
        assert claim.target is not None
        target_info = claim.target
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
            target = check_target(target_info.endpoint_url, allow_loopback=self._allow_loopback)
            host = target.host
            body = claim.payload.encode()
            secrets_ = await self._secrets(target_info, started)
            headers = webhook_headers(secrets_, claim.message_id, int(started.timestamp()), body)
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
                    raw = await read_capped(response, domain.EXCERPT_BYTES)
                finally:
                    await response.aclose()
            status = response.status_code
            category = domain.classify(status)
            if category is not None:
                phrase = httpx.codes.get_reason_phrase(status)
                error = f"HTTP {status}{' ' + phrase if phrase else ''}"
                if 300 <= status <= 399:
                    error += ": redirects are not followed"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), started)
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
            log.warning("webhook delivery %s: %s", claim.id, type(exc).__name__)
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


def _safe_url(url: str) -> str:
    """The endpoint without its query (which may carry a token) for the egress audit."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""
    return str(parsed.copy_with(query=None, fragment=None))
