"""Webhook subscription, delivery and attempt types, and the webhook inputs and payloads.

Nested lists (attempts, replayOf, subscription) resolve through the request's DataLoaders,
so a page of 100 deliveries with their attempts costs a fixed number of SQL statements.
No field carries secret material: a subscription shows its signing secret's vault reference
and version, never the value.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, cast

import httpx
import strawberry
from strawberry.scalars import JSON

import studio_integrations.schema.enums  # noqa: F401  (registers the shared enums)
from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.core.enums import (
    DeliveryDirection,
    DeliveryStatus,
    FailureCategory,
    SignatureStatus,
)
from studio_integrations.domain import webhooks as domain
from studio_integrations.persistence import webhooks as persistence
from studio_integrations.persistence.models import WebhookDelivery as DeliveryRow
from studio_integrations.persistence.models import WebhookDeliveryAttempt as AttemptRow
from studio_integrations.persistence.models import WebhookSubscription as SubscriptionRow
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers import loaders
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError
from studio_integrations.schema.observability import TRACE_URL_DOC, trace_url
from studio_integrations.schema.relay import Connection, Node
from studio_integrations.settings import Settings


@strawberry.type(
    description="One HTTP exchange of a delivery: for outbound deliveries, one request this "
    "service made (the egress audit); for inbound ones, the request received."
)
class WebhookDeliveryAttempt:
    id: strawberry.ID
    delivery_id: strawberry.ID
    number: int
    attempted_at: datetime
    url: str | None = strawberry.field(description="The endpoint (without its query).")
    resolved_address: str | None = strawberry.field(
        description="The IP address the request went to, after the egress check."
    )
    http_status: int | None
    latency_ms: float | None
    response_excerpt: str | None = strawberry.field(
        description="At most the first 4 KiB of the answer."
    )
    error_category: FailureCategory | None = strawberry.field(
        description="Null when the attempt succeeded."
    )
    error_message: str | None

    @strawberry.field(description="The host the request was addressed to.")
    def url_host(self) -> str | None:
        if not self.url:
            return None
        try:
            return httpx.URL(self.url).host or None
        except (httpx.InvalidURL, ValueError):
            return None

    @classmethod
    def from_row(cls, row: AttemptRow) -> WebhookDeliveryAttempt:
        return cls(
            id=strawberry.ID(row.id),
            delivery_id=strawberry.ID(row.delivery_id),
            number=row.number,
            attempted_at=row.attempted_at,
            url=row.url,
            resolved_address=row.resolved_address,
            http_status=row.http_status,
            latency_ms=row.latency_ms,
            response_excerpt=row.response_excerpt,
            error_category=row.error_category,
            error_message=row.error,
        )


WebhookDeliveryAttemptConnection = Connection[WebhookDeliveryAttempt]


@strawberry.type(description="Which of its own actions the viewer may perform on a subscription.")
class WebhookSubscriptionViewerCan:
    update: bool
    rotate_signing_secret: bool


@strawberry.type(description="An outbound webhook: an event type bound to an HTTPS endpoint.")
class WebhookSubscription(Node):
    event_type: str = strawberry.field(description="A DESIGN §6 event type, or `*` for all.")
    endpoint_url: str
    signing_secret_ref: str = strawberry.field(
        description="Vault reference of the `whsec_` signing secret (never its value)."
    )
    signing_secret_version: str | None
    previous_signing_secret_version: str | None = strawberry.field(
        description="The version that still signs alongside until `previousSecretValidUntil`."
    )
    previous_secret_valid_until: datetime | None
    description: str | None
    active: bool
    retry_schedule: list[int] | None = strawberry.field(
        description="This subscription's delays in seconds; null means the server default."
    )
    max_deliveries_per_second: int | None = strawberry.field(
        description="At most this many deliveries are sent per second, counted across every "
        "replica (a burst of up to this many, then this rate); the rest wait their turn. "
        "Null means no limit."
    )
    disabled_reason: str | None
    failing_since: datetime | None = strawberry.field(
        description="Since when deliveries have failed without a success in between."
    )
    created_at: datetime
    updated_at: datetime
    version: int

    @strawberry.field(description="The delays between attempts that apply, in seconds.")
    def effective_retry_schedule(self, info: Info) -> list[int]:
        settings: Settings = info.context.services.settings
        return list(self.retry_schedule or settings.webhook_retry_schedule)

    @strawberry.field(
        description="Every outbound request made for this subscription, newest first: when, "
        "to which host and resolved address, with what result. Requires `webhooks:read`.",
        extensions=requires(Scope.WEBHOOKS_READ),
    )
    async def egress_audit(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> WebhookDeliveryAttemptConnection | None:
        request = PageRequest(first=first, after=after)
        async with info.context.read() as session:
            page = await domain.egress_audit(session, str(self.id), request)
        return WebhookDeliveryAttemptConnection.from_page(page, WebhookDeliveryAttempt.from_row)

    @strawberry.field
    def viewer_can(self, info: Info) -> WebhookSubscriptionViewerCan:
        principal = info.context.require_principal()
        return WebhookSubscriptionViewerCan(
            update=principal.has(ACTION_SCOPES["updateWebhookSubscription"]),
            rotate_signing_secret=principal.has(ACTION_SCOPES["rotateWebhookSigningSecret"]),
        )

    @classmethod
    def from_row(cls, row: SubscriptionRow) -> WebhookSubscription:
        return cls(
            id=strawberry.ID(row.id),
            event_type=row.event_type,
            endpoint_url=row.endpoint_url,
            signing_secret_ref=row.signing_secret_ref,
            signing_secret_version=row.signing_secret_version,
            previous_signing_secret_version=row.previous_signing_secret_version,
            previous_secret_valid_until=row.previous_secret_valid_until,
            description=row.description,
            active=row.active,
            retry_schedule=list(row.retry_schedule) if row.retry_schedule else None,
            max_deliveries_per_second=row.max_deliveries_per_second,
            disabled_reason=row.disabled_reason,
            failing_since=row.failing_since,
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
        )


WebhookSubscriptionConnection = Connection[WebhookSubscription]


@strawberry.type(description="Which of its own actions the viewer may perform on a delivery.")
class WebhookDeliveryViewerCan:
    replay: bool = strawberry.field(
        description="False for inbound deliveries and those of no subscription: only an "
        "outbound delivery can be sent again."
    )


@strawberry.type(description="One webhook message, outbound (to a subscription) or inbound.")
class WebhookDelivery(Node):
    direction: DeliveryDirection
    status: DeliveryStatus
    signature_status: SignatureStatus = strawberry.field(
        description="Inbound: what the signature check found. Outbound: NOT_APPLICABLE."
    )
    event_type: str
    event_id: strawberry.ID | None
    message_id: str = strawberry.field(
        description="The `webhook-id`: the same across retries and replays of one message."
    )
    subscription_id: strawberry.ID | None
    connection_id: strawberry.ID | None
    attempt_count: int
    next_attempt_at: datetime | None
    replay_of_id: strawberry.ID | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    raw_payload: strawberry.Private[str]
    preloaded_attempts: strawberry.Private[list[AttemptRow] | None] = None
    trace_id: str | None = strawberry.field(
        default=None,
        description="Outbound: the trace of the event it carries (its sends join it). "
        "Inbound: the receiving request's.",
    )

    @strawberry.field(description=TRACE_URL_DOC)
    def trace_url(self, info: Info) -> str | None:
        return trace_url(info, self.trace_id)

    @strawberry.field(
        description="The preserved payload (JSON; a body that is not JSON comes as a string). "
        "Requires `webhooks:read`.",
        extensions=requires(Scope.WEBHOOKS_READ),
    )
    def payload(self) -> JSON | None:
        try:
            return cast(JSON, json.loads(self.raw_payload))
        except ValueError:
            return cast(JSON, self.raw_payload)

    @strawberry.field(description="Every attempt, in order.")
    async def attempts(self, info: Info) -> list[WebhookDeliveryAttempt]:
        rows = self.preloaded_attempts
        if rows is None:
            rows = await info.context.loaders.load(loaders.webhook_attempts, str(self.id))
        return [WebhookDeliveryAttempt.from_row(r) for r in rows]

    @strawberry.field(description="The delivery this one replays.")
    async def replay_of(
        self, info: Info
    ) -> Annotated[WebhookDelivery, strawberry.lazy("studio_integrations.schema.webhooks")] | None:
        if self.replay_of_id is None:
            return None
        row = await info.context.loaders.by_id(DeliveryRow).load(str(self.replay_of_id))
        return None if row is None else WebhookDelivery.from_row(row)

    @strawberry.field
    def viewer_can(self, info: Info) -> WebhookDeliveryViewerCan:
        principal = info.context.require_principal()
        replayable = self.direction is DeliveryDirection.OUTBOUND and self.subscription_id
        return WebhookDeliveryViewerCan(
            replay=bool(replayable) and principal.has(ACTION_SCOPES["replayWebhookDelivery"])
        )

    @strawberry.field
    async def subscription(self, info: Info) -> WebhookSubscription | None:
        if self.subscription_id is None:
            return None
        row = await info.context.loaders.by_id(SubscriptionRow).load(str(self.subscription_id))
        return None if row is None else WebhookSubscription.from_row(row)

    @classmethod
    def from_row(
        cls,
        row: DeliveryRow,
        *,
        attempts: list[AttemptRow] | None = None,
        status: DeliveryStatus | None = None,
    ) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(row.id),
            direction=row.direction,
            status=status or row.status,
            signature_status=row.signature_status,
            event_type=row.event_type,
            event_id=strawberry.ID(row.event_id) if row.event_id else None,
            message_id=row.message_id,
            subscription_id=strawberry.ID(row.subscription_id) if row.subscription_id else None,
            connection_id=strawberry.ID(row.connection_id) if row.connection_id else None,
            attempt_count=row.attempt_count,
            next_attempt_at=row.next_attempt_at,
            replay_of_id=strawberry.ID(row.replay_of_id) if row.replay_of_id else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            raw_payload=row.payload,
            preloaded_attempts=attempts,
            trace_id=row.trace_id,
        )

    @classmethod
    async def load_fresh(
        cls, info: Info, delivery_id: str, status: DeliveryStatus | None = None
    ) -> WebhookDelivery | None:
        """The delivery as committed now, with its attempts read in the same session (for
        subscriptions, whose context outlives any one event)."""
        async with info.context.read() as session:
            row = await persistence.DeliveryRepository(session).get(delivery_id)
            if row is None:
                return None
            found = await domain.attempts_for_deliveries(session, [delivery_id])
        return cls.from_row(row, attempts=found.get(delivery_id, []), status=status)


WebhookDeliveryConnection = Connection[WebhookDelivery]


# --- Inputs ------------------------------------------------------------------------------


@strawberry.input(description="Narrow the subscription list. All given conditions must hold.")
class WebhookSubscriptionFilter:
    event_type: str | None = None
    active: bool | None = None
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text in the endpoint or the description."
    )

    def to_domain(self) -> persistence.SubscriptionFilter:
        return persistence.SubscriptionFilter(
            event_type=self.event_type, active=self.active, search=self.search
        )


@strawberry.input(description="Narrow the delivery log. All given conditions must hold.")
class WebhookDeliveryFilter:
    direction: DeliveryDirection | None = None
    status: DeliveryStatus | None = None
    event_type: str | None = None
    subscription_id: strawberry.ID | None = None
    connection_id: strawberry.ID | None = None
    signature_status: SignatureStatus | None = None
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Created at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Created before.")
    search: str | None = strawberry.field(
        default=None,
        description="A delivery, message or event id, or text in the event type or payload.",
    )

    def to_domain(self) -> persistence.DeliveryFilter:
        return persistence.DeliveryFilter(
            direction=self.direction,
            status=self.status,
            event_type=self.event_type,
            subscription_id=str(self.subscription_id) if self.subscription_id else None,
            connection_id=str(self.connection_id) if self.connection_id else None,
            signature_status=self.signature_status,
            from_=self.from_,
            to=self.to,
            search=self.search,
        )


@strawberry.input
class CreateWebhookSubscriptionInput:
    event_type: str = strawberry.field(description="A DESIGN §6 event type, or `*`.")
    endpoint_url: str = strawberry.field(description="HTTPS, public addresses only.")
    signing_secret_ref: str | None = strawberry.field(
        default=None,
        description="Vault reference of a `whsec_` secret of your tenant; when omitted the "
        "server generates one straight into the vault.",
    )
    description: str | None = None
    active: bool = True
    retry_schedule: list[int] | None = strawberry.field(
        default=None, description="Delays between attempts in seconds (default: the server's)."
    )
    max_deliveries_per_second: int | None = strawberry.field(
        default=None,
        description="Send at most this many deliveries per second (1..10000, across every "
        "replica); null or omitted means no limit.",
    )

    def to_domain(self) -> domain.SubscriptionDefinition:
        return domain.SubscriptionDefinition(
            event_type=self.event_type,
            endpoint_url=self.endpoint_url,
            signing_secret_ref=self.signing_secret_ref,
            description=self.description,
            active=self.active,
            retry_schedule=self.retry_schedule,
            max_deliveries_per_second=self.max_deliveries_per_second,
        )


@strawberry.input(description="Only the fields given change; retrySchedule null clears it.")
class UpdateWebhookSubscriptionInput:
    id: strawberry.ID
    event_type: str | None = strawberry.UNSET
    endpoint_url: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    retry_schedule: list[int] | None = strawberry.UNSET
    max_deliveries_per_second: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="1..10000 deliveries per second; null removes the limit.",
    )
    version: int | None = strawberry.field(
        default=None, description="The version you read; a newer one refuses the update."
    )

    def to_domain(self) -> domain.SubscriptionChanges:
        def keep(value: Any) -> Any:
            return domain.KEEP if value is strawberry.UNSET else value

        return domain.SubscriptionChanges(
            id=str(self.id),
            event_type=keep(self.event_type),
            endpoint_url=keep(self.endpoint_url),
            description=keep(self.description),
            active=keep(self.active),
            retry_schedule=keep(self.retry_schedule),
            max_deliveries_per_second=keep(self.max_deliveries_per_second),
            expected_version=self.version,
        )


@strawberry.input
class RotateWebhookSigningSecretInput:
    id: strawberry.ID


@strawberry.input
class ReplayWebhookDeliveryInput:
    delivery_id: strawberry.ID


@strawberry.type
class CreateWebhookSubscriptionPayload:
    subscription: WebhookSubscription | None
    user_errors: list[UserError]


@strawberry.type
class UpdateWebhookSubscriptionPayload:
    subscription: WebhookSubscription | None
    user_errors: list[UserError]


@strawberry.type
class RotateWebhookSigningSecretPayload:
    subscription: WebhookSubscription | None
    user_errors: list[UserError]


@strawberry.type
class ReplayWebhookDeliveryPayload:
    delivery: WebhookDelivery | None
    user_errors: list[UserError]


@strawberry.type(
    description="An event type a webhook subscription can name, with the JSON Schema of its "
    "`data` and an example (the envelope around it is DESIGN §6's: id, type, tenantId, "
    "occurredAt, actor, traceId, subject, data)."
)
class WebhookEventType:
    name: str
    description: str
    schema: JSON = strawberry.field(description="JSON Schema (2020-12) of the event's `data`.")
    example: JSON = strawberry.field(description="An example of the event's `data`.")


@strawberry.input
class RecoverWebhookDeliveriesInput:
    subscription_id: strawberry.ID
    since: datetime = strawberry.field(description="Failed deliveries created at or after.")
    until: datetime | None = strawberry.field(
        default=None, description="…and before this (default: now)."
    )


@strawberry.type
class RecoverWebhookDeliveriesPayload:
    subscription: WebhookSubscription | None
    recovered_count: int = strawberry.field(description="Deliveries queued again.")
    user_errors: list[UserError]


@strawberry.input
class SendTestWebhookInput:
    subscription_id: strawberry.ID
    event_type: str = strawberry.field(description="One of `webhookEventTypes`.")


@strawberry.type
class SendTestWebhookPayload:
    delivery: WebhookDelivery | None
    user_errors: list[UserError]
