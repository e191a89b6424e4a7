"""Webhooks (DESIGN §7): outbound subscriptions, the fan-out of events into deliveries, the
outcome of each delivery attempt, replays, and the delivery log.

Outbound. A subscription binds an event type of DESIGN §6 (or ``*``) to an HTTPS endpoint
and a signing secret kept in the vault (``whsec_`` + base64 of 32 random bytes, generated
straight into the vault when no ``signingSecretRef`` is given; a given reference must be a
secret of the caller's tenant, like a credential's). The endpoint passes the egress policy's
URL check when it is saved, and the dispatcher resolves and checks it again on every attempt
(``domain.egress``), so a name that later resolves to a private address is refused.

Every committed event reaches ``WebhookFanout`` (an outbox relay sink) in the relay's
transaction: one PENDING delivery per matching active subscription, with the envelope as its
preserved payload and the event id as its ``webhook-id``. A unique index makes the fan-out
of one event to one subscription happen once, even if the relay publishes a row again.

Attempts. ``apply_attempt`` turns one HTTP exchange into state: 2xx SUCCEEDED; 410 FAILED
and the subscription disabled (``WebhookSubscriptionDisabled``); anything else (3xx
included: redirects are never followed) RETRYING after the next delay of the retry schedule
(the subscription's own, else ``STUDIO_WEBHOOK_RETRY_SCHEDULE``) with ±20 % jitter, or later
when the receiver's ``Retry-After`` asks so, and FAILED when the schedule is spent. A final
failure records an ``IntegrationFailure``. A subscription whose deliveries have failed
without a success for longer than the disable window is disabled too.

Replay re-sends a delivery's preserved payload as a new delivery (``replayOf``) with the same
``webhook-id``, signed afresh, and emits ``WebhookDeliveryReplayed``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import (
    DeliveryDirection,
    DeliveryStatus,
    FailureCategory,
    SignatureStatus,
)
from studio_integrations.core.errors import UserInputError
from studio_integrations.core.ids import new_id, type_of
from studio_integrations.domain.credentials import TENANT_TAG, check_secret_ref
from studio_integrations.domain.failures import record_failure
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.domain.validation import ValidationErrors
from studio_integrations.events.catalog import BY_TYPE, DEFINITIONS, EventDefinition
from studio_integrations.events.envelope import EventEnvelope, EventSubject, EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.outbound.egress import EgressRefused, check_target
from studio_integrations.outbound.signing import generate_secret
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.persistence.models import (
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from studio_integrations.persistence.repository import Page, PageRequest
from studio_integrations.persistence.webhooks import (
    AttemptRepository,
    DeliveryFilter,
    DeliveryRepository,
    SubscriptionFilter,
    SubscriptionRepository,
)
from studio_integrations.vault.base import SecretRef, SecretStore, parse_secret_ref

WILDCARD = "*"
EVENT_TYPES = frozenset(t.value for t in EventType)
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 1000
MAX_SCHEDULE_LENGTH = 20
MAX_DELAY_SECONDS = 7 * 24 * 3600
MAX_DELIVERIES_PER_SECOND = 10_000
MAX_RETRY_AFTER_SECONDS = 24 * 3600
JITTER = 0.2
SECRET_OVERLAP = timedelta(hours=24)
EXCERPT_BYTES = 4 * 1024
MAX_ERROR_CHARS = 500


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


@dataclass(frozen=True, slots=True)
class SubscriptionDefinition:
    event_type: str
    endpoint_url: str
    signing_secret_ref: str | None = None
    description: str | None = None
    active: bool = True
    retry_schedule: Sequence[int] | None = None
    max_deliveries_per_second: int | None = None  # None: unlimited


@dataclass(frozen=True, slots=True)
class SubscriptionChanges:
    id: str
    event_type: Any = KEEP
    endpoint_url: Any = KEEP
    description: Any = KEEP
    active: Any = KEEP
    retry_schedule: Any = KEEP  # None clears the override
    max_deliveries_per_second: Any = KEEP  # None clears the limit
    expected_version: int | None = None


# --- Validation --------------------------------------------------------------------------


def _check_event_type(errors: ValidationErrors, field: str, value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        errors.add(field, "REQUIRED", "must not be blank")
        return None
    if text != WILDCARD and text not in EVENT_TYPES:
        errors.add(
            field,
            "UNKNOWN_EVENT_TYPE",
            f"'{text[:100]}' is not an event type; use '*' or one of those the "
            "webhookEventTypes query lists",
        )
        return None
    return text


def _check_endpoint(
    errors: ValidationErrors, field: str, value: str | None, *, allow_loopback: bool
) -> str | None:
    text = (value or "").strip()
    if not text:
        errors.add(field, "REQUIRED", "must not be blank")
        return None
    if len(text) > MAX_URL_LENGTH:
        errors.add(field, "TOO_LONG", f"must be at most {MAX_URL_LENGTH} characters")
        return None
    try:
        target = check_target(text, allow_loopback=allow_loopback)
    except EgressRefused as exc:
        errors.add(field, exc.code, exc.message)
        return None
    return str(target.url)


def _check_description(errors: ValidationErrors, field: str, value: str | None) -> str | None:
    text = (value or "").strip()
    if len(text) > MAX_DESCRIPTION_LENGTH:
        errors.add(field, "TOO_LONG", f"must be at most {MAX_DESCRIPTION_LENGTH} characters")
    return text or None


def _check_schedule(
    errors: ValidationErrors, field: str, value: Sequence[int] | None
) -> list[int] | None:
    if value is None:
        return None
    delays = list(value)
    if not delays:
        errors.add(field, "EMPTY", "give at least one delay, or null for the default schedule")
    elif len(delays) > MAX_SCHEDULE_LENGTH:
        errors.add(field, "TOO_LONG", f"at most {MAX_SCHEDULE_LENGTH} retries")
    elif any(d < 0 or d > MAX_DELAY_SECONDS for d in delays):
        errors.add(field, "OUT_OF_RANGE", f"each delay is 0..{MAX_DELAY_SECONDS} seconds")
    else:
        return delays
    return None


def _check_rate(errors: ValidationErrors, field: str, value: Any) -> int | None:
    """A delivery rate: None (unlimited) or a whole number 1..MAX_DELIVERIES_PER_SECOND."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(field, "INVALID_RATE", "give a whole number of deliveries per second")
    elif not 1 <= value <= MAX_DELIVERIES_PER_SECOND:
        errors.add(
            field,
            "INVALID_RATE",
            f"give 1..{MAX_DELIVERIES_PER_SECOND} deliveries per second, or null for no limit",
        )
    else:
        return value
    return None


def _check_version(row: WebhookSubscription, expected: int | None) -> None:
    if expected is not None and expected != row.version:
        raise UserInputError(
            f"the subscription changed since you read it (version {row.version})",
            field="input.version",
            code="STALE_VERSION",
        )


def secret_name(subscription_id: str) -> str:
    """The vault name of a generated signing secret (vault names allow letters, digits, -)."""
    return "whsec-" + subscription_id.replace("_", "-").lower()


async def _check_signing_ref(
    errors: ValidationErrors, vault: SecretStore, ctx: ActionContext, raw: str, field: str
) -> tuple[SecretRef, str] | None:
    checked = await check_secret_ref(errors, vault, ctx.tenant_id, raw, field)
    return None if checked is None else (checked[0].unversioned(), checked[1].version)


def _subscription_data(row: WebhookSubscription) -> dict[str, Any]:
    return {
        "eventType": row.event_type,
        "endpointHost": _host(row.endpoint_url),
        "active": row.active,
        "signingSecretRef": row.signing_secret_ref,
        "signingSecretVersion": row.signing_secret_version,
        "retrySchedule": row.retry_schedule,
        "maxDeliveriesPerSecond": row.max_deliveries_per_second,
    }


def _host(url: str) -> str | None:
    try:
        return check_target(url, allow_loopback=True).host
    except EgressRefused:
        return None


# --- Governed actions --------------------------------------------------------------------


async def create_subscription(
    sessions: TenantSessions,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    allow_loopback: bool,
    definition: SubscriptionDefinition,
) -> WebhookSubscription:
    """Validate everything, then (for a generated secret) write the secret to the vault, then
    the subscription and ``WebhookSubscriptionCreated`` in one transaction. The vault is not
    called inside the transaction."""
    errors = ValidationErrors()
    event_type = _check_event_type(errors, "input.eventType", definition.event_type)
    endpoint = _check_endpoint(
        errors, "input.endpointUrl", definition.endpoint_url, allow_loopback=allow_loopback
    )
    description = _check_description(errors, "input.description", definition.description)
    schedule = _check_schedule(errors, "input.retrySchedule", definition.retry_schedule)
    rate = _check_rate(errors, "input.maxDeliveriesPerSecond", definition.max_deliveries_per_second)
    given: tuple[SecretRef, str] | None = None
    raw_ref = definition.signing_secret_ref
    if raw_ref is not None and raw_ref.strip():
        given = await _check_signing_ref(errors, vault, ctx, raw_ref, "input.signingSecretRef")
    errors.raise_any()
    assert event_type is not None
    assert endpoint is not None

    subscription_id = new_id("WebhookSubscription")
    if given is not None:
        ref, version = str(given[0]), given[1]
    else:
        name = secret_name(subscription_id)
        props = await vault.set_secret(
            name, generate_secret(), content_type="whsec", tags={TENANT_TAG: ctx.tenant_id}
        )
        ref, version = str(SecretRef(vault.vault_url, name)), props.version

    async with sessions.write() as session:
        row = WebhookSubscription(
            id=subscription_id,
            tenant_id=ctx.tenant_id,
            event_type=event_type,
            endpoint_url=endpoint,
            signing_secret_ref=ref,
            signing_secret_version=version,
            description=description,
            active=definition.active,
            retry_schedule=schedule,
            max_deliveries_per_second=rate,
        )
        session.add(row)
        await session.flush()
        emit_event(
            session,
            ctx,
            type=EventType.WEBHOOK_SUBSCRIPTION_CREATED,
            subject_type="WebhookSubscription",
            subject_id=row.id,
            data=_subscription_data(row),
        )
    return row


async def _get_subscription(
    session: AsyncSession, subscription_id: str, field: str = "input.id"
) -> WebhookSubscription:
    row = None
    if type_of(subscription_id) == "WebhookSubscription":
        row = await SubscriptionRepository(session).get(subscription_id)
    if row is None:
        raise UserInputError("no such webhook subscription", field=field, code="NOT_FOUND")
    return row


async def update_subscription(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    allow_loopback: bool,
    changes: SubscriptionChanges,
) -> WebhookSubscription:
    row = await _get_subscription(session, changes.id)
    _check_version(row, changes.expected_version)
    errors = ValidationErrors()
    changed: dict[str, Any] = {}
    if changes.event_type is not KEEP:
        value = _check_event_type(errors, "input.eventType", changes.event_type)
        if value is not None and value != row.event_type:
            changed["event_type"] = value
    if changes.endpoint_url is not KEEP:
        value = _check_endpoint(
            errors, "input.endpointUrl", changes.endpoint_url, allow_loopback=allow_loopback
        )
        if value is not None and value != row.endpoint_url:
            changed["endpoint_url"] = value
    if changes.description is not KEEP:
        value = _check_description(errors, "input.description", changes.description)
        if value != row.description:
            changed["description"] = value
    if changes.retry_schedule is not KEEP:
        schedule = _check_schedule(errors, "input.retrySchedule", changes.retry_schedule)
        if not errors.has("input.retrySchedule") and schedule != row.retry_schedule:
            changed["retry_schedule"] = schedule
    if changes.max_deliveries_per_second is not KEEP:
        field = "input.maxDeliveriesPerSecond"
        rate = _check_rate(errors, field, changes.max_deliveries_per_second)
        if not errors.has(field) and rate != row.max_deliveries_per_second:
            changed["max_deliveries_per_second"] = rate
    if changes.active is not KEEP and changes.active is not None and changes.active != row.active:
        changed["active"] = bool(changes.active)
    errors.raise_any()
    if not changed:
        raise UserInputError("nothing to change", field="input", code="NOTHING_TO_UPDATE")
    for attr, value in changed.items():
        setattr(row, attr, value)
    if changed.get("active") is True:
        row.disabled_reason = None
        row.failing_since = None
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.WEBHOOK_SUBSCRIPTION_UPDATED,
        subject_type="WebhookSubscription",
        subject_id=row.id,
        data={**_subscription_data(row), "changed": sorted(_camel(k) for k in changed)},
    )
    return row


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


async def rotate_signing_secret(
    sessions: TenantSessions,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    subscription_id: str,
    now: datetime | None = None,
) -> WebhookSubscription:
    """A new ``whsec_`` version of the subscription's secret; the version it replaces keeps
    signing alongside for 24 h (receivers may accept either while they update)."""
    async with sessions.read() as session:
        row = await _get_subscription(session, subscription_id)
        ref = parse_secret_ref(row.signing_secret_ref, field="input.id")
        expected_version = row.version
    props = await vault.set_secret(
        ref.name, generate_secret(), content_type="whsec", tags={TENANT_TAG: ctx.tenant_id}
    )
    at = now or utcnow()
    async with sessions.write() as session:
        row = await _get_subscription(session, subscription_id)
        _check_version(row, expected_version)
        previous = row.signing_secret_version
        row.previous_signing_secret_version = previous
        row.previous_secret_valid_until = at + SECRET_OVERLAP
        row.signing_secret_version = props.version
        await session.flush()
        emit_event(
            session,
            ctx,
            type=EventType.WEBHOOK_SIGNING_SECRET_ROTATED,
            subject_type="WebhookSubscription",
            subject_id=row.id,
            data={
                "signingSecretRef": row.signing_secret_ref,
                "newVersion": props.version,
                "previousVersion": previous,
                "previousValidUntil": row.previous_secret_valid_until.isoformat(),
            },
        )
    return row


async def replay_delivery(
    session: AsyncSession, ctx: ActionContext, *, delivery_id: str
) -> WebhookDelivery:
    original = None
    if type_of(delivery_id) == "WebhookDelivery":
        original = await DeliveryRepository(session).get(delivery_id)
    if original is None:
        raise UserInputError("no such delivery", field="input.deliveryId", code="NOT_FOUND")
    if original.direction is not DeliveryDirection.OUTBOUND or original.subscription_id is None:
        raise UserInputError(
            "only outbound deliveries can be replayed (an inbound delivery has no receiver)",
            field="input.deliveryId",
            code="NOT_REPLAYABLE",
        )
    subscription = await SubscriptionRepository(session).get(original.subscription_id)
    if subscription is None or not subscription.active:
        raise UserInputError(
            "the delivery's subscription is not active; re-activate it first",
            field="input.deliveryId",
            code="SUBSCRIPTION_INACTIVE",
        )
    # The replay's sends join the trace of the request that asked for it.
    replay = _replay_of(original, utcnow(), trace_id=ctx.trace_id)
    session.add(replay)
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.WEBHOOK_DELIVERY_REPLAYED,
        subject_type="WebhookDelivery",
        subject_id=replay.id,
        data={
            "replayOf": original.id,
            "subscriptionId": original.subscription_id,
            "messageId": original.message_id,
            "eventType": original.event_type,
        },
    )
    return replay


MAX_RECOVERED = 10_000


def _outbound_delivery(
    *,
    tenant_id: str,
    subscription_id: str,
    event_type: str,
    event_id: str | None,
    message_id: str,
    payload: str,
    now: datetime,
    trace_id: str | None,
    replay_of_id: str | None = None,
) -> WebhookDelivery:
    """A PENDING outbound delivery, due at ``now``: the one constructor for fan-out, replay,
    recovery and test sends."""
    return WebhookDelivery(
        id=new_id("WebhookDelivery"),
        tenant_id=tenant_id,
        direction=DeliveryDirection.OUTBOUND,
        subscription_id=subscription_id,
        event_type=event_type,
        event_id=event_id,
        message_id=message_id,
        status=DeliveryStatus.PENDING,
        signature_status=SignatureStatus.NOT_APPLICABLE,
        payload=payload,
        headers={},
        next_attempt_at=now,
        replay_of_id=replay_of_id,
        trace_id=trace_id,
    )


def _replay_of(original: WebhookDelivery, now: datetime, *, trace_id: str) -> WebhookDelivery:
    assert original.subscription_id is not None  # outbound deliveries only
    return _outbound_delivery(
        tenant_id=original.tenant_id,
        subscription_id=original.subscription_id,
        event_type=original.event_type,
        event_id=original.event_id,
        message_id=original.message_id,
        payload=original.payload,
        now=now,
        trace_id=trace_id,
        replay_of_id=original.id,
    )


def _require_active(subscription: WebhookSubscription, field: str) -> None:
    if not subscription.active:
        raise UserInputError(
            "the subscription is not active; re-activate it first",
            field=field,
            code="SUBSCRIPTION_INACTIVE",
        )


async def recover_deliveries(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    subscription_id: str,
    since: datetime,
    until: datetime | None,
    now: datetime | None = None,
) -> tuple[WebhookSubscription, int]:
    """Queue again every FAILED outbound delivery of a subscription created in ``[since,
    until)`` (after an endpoint outage), each as a replay with its ``webhook-id``; one
    ``WebhookDeliveryReplayed`` records the whole recovery with its count."""
    at = now or utcnow()
    end = until or at
    subscription = await _get_subscription(session, subscription_id, "input.subscriptionId")
    _require_active(subscription, "input.subscriptionId")
    if since.tzinfo is None or end.tzinfo is None:
        raise UserInputError("give times with a UTC offset", field="input.since", code="INVALID")
    if since >= end:
        raise UserInputError(
            "since must be before until (or now)", field="input.since", code="INVALID_WINDOW"
        )
    failed = await DeliveryRepository(session).failed_between(
        subscription.id, since, end, limit=MAX_RECOVERED + 1
    )
    if len(failed) > MAX_RECOVERED:
        raise UserInputError(
            f"more than {MAX_RECOVERED} failed deliveries in the window; recover a shorter one",
            field="input.since",
            code="TOO_MANY",
        )
    for original in failed:
        session.add(_replay_of(original, at, trace_id=ctx.trace_id))
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.WEBHOOK_DELIVERY_REPLAYED,
        subject_type="WebhookSubscription",
        subject_id=subscription.id,
        data={
            "subscriptionId": subscription.id,
            "recovered": len(failed),
            "since": since.isoformat(),
            "until": end.isoformat(),
        },
    )
    return subscription, len(failed)


async def send_test(
    session: AsyncSession, ctx: ActionContext, *, subscription_id: str, event_type: str
) -> WebhookDelivery:
    """Queue a signed example of ``event_type`` (its ``webhookEventTypes`` example) to the
    subscription's endpoint, marked ``"test": true``; delivered and logged like any other."""
    subscription = await _get_subscription(session, subscription_id, "input.subscriptionId")
    _require_active(subscription, "input.subscriptionId")
    errors = ValidationErrors()
    name = _check_event_type(errors, "input.eventType", event_type)
    if name == WILDCARD:
        errors.add("input.eventType", "UNKNOWN_EVENT_TYPE", "name one event type, not '*'")
    errors.raise_any()
    assert name is not None
    now = utcnow()
    envelope = EventEnvelope(
        id=new_id("AuditEvent"),
        type=name,
        tenant_id=ctx.tenant_id,
        occurred_at=now,
        actor=ctx.actor,
        trace_id=ctx.trace_id,
        subject=EventSubject(type="WebhookSubscription", id=subscription.id),
        data=BY_TYPE[name].example,
    )
    delivery = _outbound_delivery(
        tenant_id=ctx.tenant_id,
        subscription_id=subscription.id,
        event_type=name,
        event_id=None,
        message_id=envelope.id,
        payload=json.dumps({**envelope.to_dict(), "test": True}, separators=(",", ":")),
        now=now,
        trace_id=None,
    )
    session.add(delivery)
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.WEBHOOK_TEST_SENT,
        subject_type="WebhookDelivery",
        subject_id=delivery.id,
        data={
            "subscriptionId": subscription.id,
            "deliveryId": delivery.id,
            "eventType": name,
            "messageId": envelope.id,
        },
    )
    return delivery


# --- Reads -------------------------------------------------------------------------------


def event_types() -> tuple[EventDefinition, ...]:
    """What a subscription can name (besides ``*``): the definitions events are checked
    against when they are emitted (``events.catalog``)."""
    return DEFINITIONS


async def list_subscriptions(
    session: AsyncSession, flt: SubscriptionFilter, page: PageRequest
) -> Page[WebhookSubscription]:
    if flt.event_type is not None:
        errors = ValidationErrors()
        _check_event_type(errors, "filter.eventType", flt.event_type)
        errors.raise_any()
    return await SubscriptionRepository(session).search(flt, page)


async def list_deliveries(
    session: AsyncSession, flt: DeliveryFilter, page: PageRequest
) -> Page[WebhookDelivery]:
    return await DeliveryRepository(session).search(flt, page)


async def egress_audit(
    session: AsyncSession, subscription_id: str, page: PageRequest
) -> Page[WebhookDeliveryAttempt]:
    return await AttemptRepository(session).egress_page(subscription_id, page)


async def attempts_for_deliveries(
    session: AsyncSession, delivery_ids: Sequence[str]
) -> dict[str, list[WebhookDeliveryAttempt]]:
    return await AttemptRepository(session).for_deliveries(delivery_ids)


# --- Fan-out (the outbox relay's sink) ---------------------------------------------------


class WebhookFanout:
    """Turns each committed event into deliveries for the tenant's matching subscriptions,
    in the relay's transaction (so a delivery exists iff its event was marked published).

    A batch of events costs a fixed number of statements, whatever its size: the matching
    subscriptions, the fan-outs already made (a relay whose lease ran out publishes rows
    again) and the deliveries that raised failure events are each read with one statement,
    and the new deliveries are written with one flush, in event order (ids are time-ordered,
    so each subscription's deliveries keep the order of its events)."""

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self._wake = wake

    async def __call__(self, session: AsyncSession, envelopes: Sequence[EventEnvelope]) -> None:
        # A test send's audit record is not itself sent.
        events = [e for e in envelopes if e.type != EventType.WEBHOOK_TEST_SENT]
        if not events:
            return
        subscriptions = await SubscriptionRepository(session).matching_any(
            {e.tenant_id for e in events}, {e.type for e in events}
        )
        targets = [
            (
                e,
                [
                    s
                    for s in subscriptions
                    if s.tenant_id == e.tenant_id and s.event_type in (e.type, "*")
                ],
            )
            for e in events
        ]
        targets = [(e, subs) for e, subs in targets if subs]
        if not targets:
            return
        repo = DeliveryRepository(session)
        done = await repo.fanned_out(
            [e.id for e, _ in targets], {s.id for _, subs in targets for s in subs}
        )
        # No feedback loops (README "Webhook failures never feed themselves"): a failure
        # that a webhook delivery caused is not sent to that delivery's subscription, and is
        # not sent to any webhook when that delivery itself carried a failure. So an event
        # leads to at most one generation of failure deliveries, whatever fails.
        causes = {
            e.id: e.data["deliveryId"]
            for e, _ in targets
            if e.type == EventType.INTEGRATION_FAILURE_RAISED
            and isinstance(e.data.get("deliveryId"), str)
        }
        found = await repo.get_many(list(set(causes.values())))  # none asked: no statement
        sources = {d.id: d for d in found if d is not None}
        now = utcnow()
        added = 0
        for envelope, subs in targets:
            own = None
            if envelope.id in causes:
                source = sources.get(causes[envelope.id])
                if source is not None and source.event_type == EventType.INTEGRATION_FAILURE_RAISED:
                    continue
                own = source.subscription_id if source is not None else None
            payload = envelope.to_json()
            for sub in subs:
                if (envelope.id, sub.id) in done or sub.id == own:
                    continue
                session.add(
                    _outbound_delivery(
                        tenant_id=envelope.tenant_id,
                        subscription_id=sub.id,
                        event_type=envelope.type,
                        event_id=envelope.id,
                        message_id=envelope.id,
                        payload=payload,
                        now=now,
                        trace_id=envelope.trace_id,  # its sends join the event's trace
                    )
                )
                added += 1
        if added:
            await session.flush()
            if self._wake is not None:
                sa_event.listen(
                    session.sync_session, "after_commit", lambda _s: self._wake_now(), once=True
                )

    def _wake_now(self) -> None:
        if self._wake is not None:
            self._wake()


# --- Attempt outcomes (the dispatcher) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one outbound HTTP exchange did. ``status`` is None when no answer came."""

    started_at: datetime
    url_host: str | None
    address: str | None
    status: int | None
    latency_ms: float
    excerpt: str | None
    error: str | None
    category: FailureCategory | None  # None: success
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299


def classify(status: int) -> FailureCategory | None:
    if 200 <= status <= 299:
        return None
    if 300 <= status <= 399:
        return FailureCategory.CONFIGURATION
    if status == 401:
        return FailureCategory.AUTHENTICATION
    if status == 403:
        return FailureCategory.AUTHORIZATION
    if status == 408:
        return FailureCategory.TIMEOUT
    if status == 429:
        return FailureCategory.RATE_LIMITED
    if status >= 500:
        return FailureCategory.SERVER_ERROR
    return FailureCategory.CLIENT_ERROR


def next_delay(
    schedule: Sequence[int], failures: int, *, rng: random.Random, retry_after: float | None
) -> float | None:
    """Seconds until the next attempt after ``failures`` failed attempts, or None when the
    schedule is spent. ±20 % jitter; never sooner than ``Retry-After``."""
    if failures > len(schedule):
        return None
    base = float(schedule[failures - 1])
    delay = base * (1 + rng.uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return max(delay, 0.0)


@dataclass(frozen=True, slots=True)
class AttemptPolicy:
    default_schedule: Sequence[int]
    disable_after: timedelta
    rng: random.Random


IN_FLIGHT = "no outcome recorded yet: the request is in flight, or its sender stopped"


def begin_attempt(
    session: AsyncSession, delivery: WebhookDelivery, *, started_at: datetime, url: str | None
) -> WebhookDeliveryAttempt:
    """Record an attempt before its request goes out (in the claim's transaction): a sender
    killed mid-request leaves it in the egress audit. ``apply_attempt`` completes it."""
    number = delivery.attempt_count + 1
    delivery.attempt_count = number
    attempt = WebhookDeliveryAttempt(
        id=new_id("WebhookDeliveryAttempt"),
        tenant_id=delivery.tenant_id,
        delivery_id=delivery.id,
        subscription_id=delivery.subscription_id,
        number=number,
        attempted_at=started_at,
        url=url,
        error=IN_FLIGHT,
        error_category=FailureCategory.UNKNOWN,
    )
    session.add(attempt)
    return attempt


async def release_claims(
    session: AsyncSession,
    claims: Sequence[tuple[str, datetime | None, str | None]],
    *,
    now: datetime,
    reason: str,
) -> None:
    """Release the leases of abandoned sends (``(delivery id, our lease, attempt id)``) so any
    dispatcher takes them at once; a lease another dispatcher holds by now is left alone. The
    attempts stay in the audit with ``reason``."""
    ids = [c[0] for c in claims]
    ours = {c[0]: c[1] for c in claims}
    rows = (
        await session.execute(
            select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).with_for_update()
        )
    ).scalars()
    for row in rows:
        if row.status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING) and (
            row.lease_until == ours[row.id]
        ):
            row.lease_until = None
            row.next_attempt_at = min(row.next_attempt_at or now, now)
    attempt_ids = [c[2] for c in claims if c[2]]
    if attempt_ids:
        attempts = (
            await session.execute(
                select(WebhookDeliveryAttempt).where(WebhookDeliveryAttempt.id.in_(attempt_ids))
            )
        ).scalars()
        for attempt in attempts:
            if attempt.error == IN_FLIGHT:
                attempt.error = reason
    await session.flush()


async def apply_attempt(
    session: AsyncSession,
    delivery: WebhookDelivery,
    subscription: WebhookSubscription | None,
    result: AttemptResult,
    policy: AttemptPolicy,
    *,
    health: HealthPolicy,
    now: datetime,
    url: str | None,
    attempt: WebhookDeliveryAttempt | None = None,
) -> None:
    """Record one attempt and move the delivery (and its subscription) on. ``session`` is a
    system-scope transaction; events are emitted for the delivery's tenant. ``attempt`` is
    the row ``begin_attempt`` wrote, completed here; without one a new row is added."""
    ctx = ActionContext.system(delivery.tenant_id)
    if attempt is None:
        number = await AttemptRepository(session).next_number(delivery.id)
        attempt = WebhookDeliveryAttempt(
            id=new_id("WebhookDeliveryAttempt"),
            tenant_id=delivery.tenant_id,
            delivery_id=delivery.id,
            subscription_id=delivery.subscription_id,
            number=number,
            url=url,
        )
        session.add(attempt)
        delivery.attempt_count = number
    number = attempt.number
    attempt.attempted_at = result.started_at
    attempt.resolved_address = result.address
    attempt.http_status = result.status
    attempt.latency_ms = result.latency_ms
    attempt.response_excerpt = result.excerpt
    attempt.error = (result.error or None) and result.error[:MAX_ERROR_CHARS]
    attempt.error_category = result.category
    delivery.lease_until = None
    if delivery.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
        # Another dispatcher took the delivery over (our lease had expired) and finished it
        # first: the attempt is on record, the outcome stands.
        return
    if result.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.finished_at = now
        delivery.next_attempt_at = None
        if subscription is not None and subscription.failing_since is not None:
            subscription.failing_since = None
        return

    gone = result.status == 410
    schedule = (
        subscription.retry_schedule
        if subscription is not None and subscription.retry_schedule
        else policy.default_schedule
    )
    delay = (
        None
        if gone
        else next_delay(schedule, number, rng=policy.rng, retry_after=result.retry_after)
    )
    if subscription is not None and subscription.failing_since is None:
        subscription.failing_since = now
    if delay is not None and (subscription is None or subscription.active):
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    else:
        delivery.status = DeliveryStatus.FAILED
        delivery.finished_at = now
        delivery.next_attempt_at = None
    await session.flush()

    if subscription is not None and subscription.active:
        reason = None
        if gone:
            reason = "the receiver answered 410 Gone"
        elif subscription.failing_since is not None and (
            now - subscription.failing_since >= policy.disable_after
        ):
            reason = (
                "deliveries failed continuously for "
                f"{policy.disable_after.total_seconds() / 3600:g} h"
            )
        if reason is not None:
            await disable_subscription(session, ctx, subscription, reason)
            if delivery.status is DeliveryStatus.RETRYING:
                delivery.status = DeliveryStatus.FAILED
                delivery.finished_at = now
                delivery.next_attempt_at = None

    if delivery.status is DeliveryStatus.FAILED:
        await record_failure(
            session,
            ctx,
            policy=health,
            category=result.category or FailureCategory.UNKNOWN,
            message=f"webhook delivery to {result.url_host or 'the endpoint'} failed after "
            f"{number} attempt(s): {result.error or 'no detail'}",
            connection_id=delivery.connection_id,
            delivery_id=delivery.id,
        )


async def disable_subscription(
    session: AsyncSession, ctx: ActionContext, subscription: WebhookSubscription, reason: str
) -> None:
    subscription.active = False
    subscription.disabled_reason = reason
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.WEBHOOK_SUBSCRIPTION_DISABLED,
        subject_type="WebhookSubscription",
        subject_id=subscription.id,
        data={"reason": reason, "endpointHost": _host(subscription.endpoint_url)},
    )


async def abandon(
    session: AsyncSession,
    delivery: WebhookDelivery,
    reason: str,
    *,
    health: HealthPolicy,
    now: datetime,
) -> None:
    """A delivery whose subscription is gone or inactive stops without another request."""
    delivery.status = DeliveryStatus.FAILED
    delivery.finished_at = now
    delivery.next_attempt_at = None
    delivery.lease_until = None
    await session.flush()
    await record_failure(
        session,
        ActionContext.system(delivery.tenant_id),
        policy=health,
        category=FailureCategory.CONFIGURATION,
        message=f"webhook delivery abandoned: {reason}",
        connection_id=delivery.connection_id,
        delivery_id=delivery.id,
    )
