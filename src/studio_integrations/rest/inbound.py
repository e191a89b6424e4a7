"""``POST /webhooks/inbound/{connectionId}``: webhooks providers send us (DESIGN §7).

Not behind the bearer-token gateway: a provider authenticates by signing with the secret
named by the connection's ``inboundSigningSecretRef`` (Standard Webhooks: ``webhook-id``,
``webhook-timestamp``, ``webhook-signature``; ``outbound.signing``). In order:

1. The body is read up to ``STUDIO_WEBHOOK_INBOUND_MAX_BYTES`` (256 KiB); more is refused
   with 413 whichever connection is named (recorded, unverified, for a live connection).
2. An id that is not a live connection (unknown, another tenant's — ids are global, so it
   cannot be told apart — or retired) answers exactly like a bad signature: 401, same body,
   and the same work before the answer: the signature is checked (against a throw-away
   secret), and a rejection for a live connection is recorded only after the answer has
   gone (``InboundRecorder``), so neither the answer nor its timing tells a live connection
   from an unknown one. The live connection's signing secret is kept in process for
   ``SECRET_CACHE_SECONDS`` so verifying costs no vault round trip either (a new version
   under an unversioned reference is picked up within that time).
   Unsigned requests (no signature headers) are throttled per connection: at most one is
   recorded per ``UNSIGNED_WINDOW_SECONDS``; the others are counted and the count is
   recorded with the next one (in its failure's message), not a row each.
3. The signature is checked; a timestamp more than 5 minutes from now fails too. Every
   delivery to a live connection is recorded with its signature status (VALID, INVALID,
   MISSING) and one attempt (our answer's status and latency), accepted or not; a rejected
   one also records an ``IntegrationFailure`` (SIGNATURE).
4. A valid message whose ``webhook-id`` this connection already accepted answers 200 again
   and records nothing new (providers retry; de-duplication makes that safe).
5. Accepted: 200 with the delivery id, and ``InboundWebhookReceived`` (actor: the connection,
   kind SERVICE) carrying the payload, so outbound subscriptions can forward it.
What is recorded, and the event, are the domain action ``domain.inbound.record_inbound``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from studio_integrations.auth.request_limits import ascii_length
from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import ConnectionStatus, SignatureStatus
from studio_integrations.core.ids import new_id, type_of
from studio_integrations.domain.inbound import (
    InboundBody,
    InboundOutcome,
    accepted_before,
    connection_actor,
    record_inbound,
)
from studio_integrations.outbound.signing import Verdict, verify
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationConnection, WebhookDelivery
from studio_integrations.services import Services
from studio_integrations.vault.base import parse_secret_ref

log = logging.getLogger(__name__)

REJECTED = {"error": "signature verification failed"}
TOO_LARGE = {"error": "payload too large"}
KEPT_HEADERS = ("webhook-id", "webhook-timestamp", "content-type", "user-agent")
MAX_HEADER_CHARS = 500
SECRET_CACHE_SECONDS = 30.0
UNSIGNED_WINDOW_SECONDS = 60.0
MAX_TRACKED_CONNECTIONS = 10_000
# Verifies requests to unknown connections, so they cost what a live connection's do.
_DECOY_SECRET = "whsec_" + secrets.token_urlsafe(32)


@dataclass
class _UnsignedTally:
    window_start: float
    suppressed: int = 0


@dataclass
class InboundRecorder:
    """Per-process state of the inbound endpoint: recordings of rejected requests made
    after the answer (``drain`` awaits them: tests, shutdown), the unsigned-request
    throttle, and the signing-secret cache."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    unsigned: OrderedDict[str, _UnsignedTally] = field(default_factory=OrderedDict)
    secrets: OrderedDict[tuple[str, str], tuple[float, str]] = field(default_factory=OrderedDict)

    def later(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("inbound webhook: recording failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    def admit_unsigned(self, connection_id: str, now: float) -> tuple[bool, int]:
        """Whether this unsigned request is recorded, and how many were suppressed since
        the last recorded one (counted into it)."""
        tally = self.unsigned.get(connection_id)
        if tally is None or now - tally.window_start >= UNSIGNED_WINDOW_SECONDS:
            suppressed = tally.suppressed if tally is not None else 0
            self.unsigned[connection_id] = _UnsignedTally(window_start=now)
            self.unsigned.move_to_end(connection_id)
            while len(self.unsigned) > MAX_TRACKED_CONNECTIONS:
                self.unsigned.popitem(last=False)
            return True, suppressed
        tally.suppressed += 1
        return False, 0

    def cached_secret(self, key: tuple[str, str], now: float) -> str | None:
        hit = self.secrets.get(key)
        if hit is None or now - hit[0] >= SECRET_CACHE_SECONDS:
            return None
        return hit[1]

    def keep_secret(self, key: tuple[str, str], value: str, now: float) -> None:
        self.secrets[key] = (now, value)
        self.secrets.move_to_end(key)
        while len(self.secrets) > MAX_TRACKED_CONNECTIONS:
            self.secrets.popitem(last=False)


def recorder_of(app: Any) -> InboundRecorder:
    recorder: InboundRecorder | None = getattr(app.state, "inbound_recorder", None)
    if recorder is None:
        recorder = InboundRecorder()
        app.state.inbound_recorder = recorder
    return recorder


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = ascii_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def inbound_webhook(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    started = time.perf_counter()
    received_at = utcnow()
    limit = services.settings.webhook_inbound_max_bytes
    too_large = False
    try:
        body = await _read_body(request, limit)
    except _TooLarge:
        body, too_large = b"", True
    except ClientDisconnect:
        return JSONResponse({"error": "incomplete body"}, status_code=400)

    connection_id = request.path_params["connection_id"]
    connection = None
    if type_of(connection_id) == "IntegrationConnection":
        async with services.db.read_session(TenantScope.system_scope(), background=True) as session:
            connection = await session.get(IntegrationConnection, connection_id)
    headers = {k.lower(): v for k, v in request.headers.items()}
    recorder = recorder_of(request.app)
    if connection is None or connection.status is ConnectionStatus.RETIRED:
        if not too_large:
            verify(_DECOY_SECRET, headers, body, now=time.time())  # the same work as a live one
        return JSONResponse(
            TOO_LARGE if too_large else REJECTED, status_code=413 if too_large else 401
        )

    if too_large:
        # Unread, so unverified: recorded as MISSING or INVALID, never VALID.
        signed = "webhook-signature" in headers
        outcome = InboundOutcome(
            SignatureStatus.INVALID if signed else SignatureStatus.MISSING,
            False,
            413,
            f"the body is larger than {limit} bytes",
        )
    else:
        outcome = await _verify(services, recorder, connection, headers, body)
    suppressed = 0
    if outcome.status is SignatureStatus.MISSING:
        admitted, suppressed = recorder.admit_unsigned(connection.id, time.monotonic())
        if not admitted:
            return JSONResponse(REJECTED, status_code=outcome.http_status)
    message_id = (headers.get("webhook-id") or "")[:200] or new_id("WebhookDelivery")
    request_ = _Recording(
        services=services,
        connection=connection,
        outcome=outcome,
        message_id=message_id,
        body=InboundBody.of(body),
        headers={k: headers[k][:MAX_HEADER_CHARS] for k in KEPT_HEADERS if k in headers},
        received_at=received_at,
        started=started,
        suppressed=suppressed,
    )
    if not outcome.accepted:
        # Answered first, recorded after: a rejection costs a live connection no more time
        # before the answer than an unknown one.
        recorder.later(request_.record())
        answer = TOO_LARGE if outcome.http_status == 413 else REJECTED
        return JSONResponse(answer, status_code=outcome.http_status)
    try:
        async with services.db.transaction(request_.scope) as session:
            duplicate_of = await accepted_before(session, connection, message_id)
            if duplicate_of is None:
                delivery = await request_.record_in(session)
    except IntegrityError:
        # A concurrent request accepted the same message id first.
        async with services.db.read_session(request_.scope) as session:
            duplicate_of = await accepted_before(session, connection, message_id)
    if duplicate_of is not None:
        return JSONResponse({"status": "duplicate", "deliveryId": duplicate_of}, status_code=200)
    await services.webhook_feed.publish(delivery)
    return JSONResponse({"status": "accepted", "deliveryId": delivery.id}, status_code=200)


@dataclass(frozen=True)
class _Recording:
    """One request to a live connection, to record (``domain.inbound.record_inbound``)."""

    services: Services
    connection: IntegrationConnection
    outcome: InboundOutcome
    message_id: str
    body: InboundBody
    headers: dict[str, str]
    received_at: datetime
    started: float
    suppressed: int

    @property
    def scope(self) -> TenantScope:
        return TenantScope.of(self.connection.tenant_id)

    async def record_in(self, session: AsyncSession) -> WebhookDelivery:
        return await record_inbound(
            session,
            connection_actor(self.connection),
            self.connection,
            self.outcome,
            message_id=self.message_id,
            body=self.body,
            headers=self.headers,
            received_at=self.received_at,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            policy=self.services.health_policy,
            suppressed=self.suppressed,
        )

    async def record(self) -> None:
        """A rejection, after the answer: in its own transaction, then on the live feed."""
        async with self.services.db.transaction(self.scope) as session:
            delivery = await self.record_in(session)
        await self.services.webhook_feed.publish(delivery)


async def _verify(
    services: Services,
    recorder: InboundRecorder,
    connection: IntegrationConnection,
    headers: dict[str, str],
    body: bytes,
) -> InboundOutcome:
    if not connection.inbound_signing_secret_ref:
        verify(_DECOY_SECRET, headers, body, now=time.time())
        return InboundOutcome(
            SignatureStatus.INVALID, False, 401, "the connection has no inbound signing secret"
        )
    key = (connection.id, connection.inbound_signing_secret_ref)
    secret = recorder.cached_secret(key, time.monotonic())
    if secret is None:
        try:
            ref = parse_secret_ref(connection.inbound_signing_secret_ref)
            secret = (await services.vault.get_secret(ref.name, ref.version)).value
        except Exception as exc:
            log.warning("inbound webhook: signing secret unavailable (%s)", type(exc).__name__)
            return InboundOutcome(
                SignatureStatus.INVALID, False, 401, "the inbound signing secret is unavailable"
            )
        recorder.keep_secret(key, secret, time.monotonic())
    verdict = verify(secret, headers, body, now=time.time())
    if verdict is Verdict.VALID:
        return InboundOutcome(SignatureStatus.VALID, True, 200, None)
    if verdict is Verdict.MISSING:
        return InboundOutcome(SignatureStatus.MISSING, False, 401, "signature headers are missing")
    if verdict is Verdict.STALE:
        return InboundOutcome(
            SignatureStatus.INVALID, False, 401, "timestamp is more than 5 minutes from now"
        )
    return InboundOutcome(SignatureStatus.INVALID, False, 401, "signature does not match")
