"""webhookSubscriptions and webhookDeliveries queries; createWebhookSubscription,
updateWebhookSubscription, rotateWebhookSigningSecret, replayWebhookDelivery."""

from __future__ import annotations

from typing import TypeVar, cast

import strawberry
from strawberry.scalars import JSON

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.domain import webhooks as domain
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers.governed import run_governed, run_governed_calls
from studio_integrations.schema.context import Info
from studio_integrations.schema.webhooks import (
    CreateWebhookSubscriptionInput,
    CreateWebhookSubscriptionPayload,
    RecoverWebhookDeliveriesInput,
    RecoverWebhookDeliveriesPayload,
    ReplayWebhookDeliveryInput,
    ReplayWebhookDeliveryPayload,
    RotateWebhookSigningSecretInput,
    RotateWebhookSigningSecretPayload,
    SendTestWebhookInput,
    SendTestWebhookPayload,
    UpdateWebhookSubscriptionInput,
    UpdateWebhookSubscriptionPayload,
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookDeliveryFilter,
    WebhookEventType,
    WebhookSubscription,
    WebhookSubscriptionConnection,
    WebhookSubscriptionFilter,
)

T = TypeVar("T")


async def resolve_webhook_subscriptions(
    info: Info,
    filter: WebhookSubscriptionFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> WebhookSubscriptionConnection:
    flt = (filter or WebhookSubscriptionFilter()).to_domain()
    request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_subscriptions(session, flt, request)
    return WebhookSubscriptionConnection.from_page(page, WebhookSubscription.from_row)


async def resolve_webhook_deliveries(
    info: Info,
    filter: WebhookDeliveryFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> WebhookDeliveryConnection:
    flt = (filter or WebhookDeliveryFilter()).to_domain()
    request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_deliveries(session, flt, request)
    return WebhookDeliveryConnection.from_page(page, WebhookDelivery.from_row)


def resolve_webhook_event_types(info: Info) -> list[WebhookEventType]:
    return [
        WebhookEventType(
            name=d.type.value,
            description=d.description,
            schema=cast(JSON, d.data_schema),
            example=cast(JSON, d.example),
        )
        for d in domain.event_types()
    ]


async def create_webhook_subscription(
    info: Info, input: CreateWebhookSubscriptionInput
) -> CreateWebhookSubscriptionPayload:
    definition = input.to_domain()
    services = info.context.services
    outcome = await run_governed_calls(
        info,
        lambda sessions, ctx: domain.create_subscription(
            sessions,
            ctx,
            vault=services.vault,
            allow_loopback=services.settings.allow_loopback_targets,
            definition=definition,
        ),
    )
    return CreateWebhookSubscriptionPayload(
        subscription=outcome.map(WebhookSubscription.from_row), user_errors=outcome.user_errors
    )


async def update_webhook_subscription(
    info: Info, input: UpdateWebhookSubscriptionInput
) -> UpdateWebhookSubscriptionPayload:
    changes = input.to_domain()
    allow_loopback = info.context.services.settings.allow_loopback_targets
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.update_subscription(
            session, ctx, allow_loopback=allow_loopback, changes=changes
        ),
    )
    return UpdateWebhookSubscriptionPayload(
        subscription=outcome.map(WebhookSubscription.from_row),
        user_errors=outcome.user_errors,
    )


async def rotate_webhook_signing_secret(
    info: Info, input: RotateWebhookSigningSecretInput
) -> RotateWebhookSigningSecretPayload:
    subscription_id = str(input.id)
    vault = info.context.services.vault
    outcome = await run_governed_calls(
        info,
        lambda sessions, ctx: domain.rotate_signing_secret(
            sessions, ctx, vault=vault, subscription_id=subscription_id
        ),
    )
    return RotateWebhookSigningSecretPayload(
        subscription=outcome.map(WebhookSubscription.from_row), user_errors=outcome.user_errors
    )


async def replay_webhook_delivery(
    info: Info, input: ReplayWebhookDeliveryInput
) -> ReplayWebhookDeliveryPayload:
    delivery_id = str(input.delivery_id)
    outcome = await run_governed(
        info, lambda session, ctx: domain.replay_delivery(session, ctx, delivery_id=delivery_id)
    )
    services = info.context.services
    if outcome.value is not None:
        services.webhook_dispatcher.wake()
        await services.webhook_feed.publish(outcome.value)
    return ReplayWebhookDeliveryPayload(
        delivery=outcome.map(lambda row: WebhookDelivery.from_row(row, attempts=[])),
        user_errors=outcome.user_errors,
    )


async def recover_webhook_deliveries(
    info: Info, input: RecoverWebhookDeliveriesInput
) -> RecoverWebhookDeliveriesPayload:
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.recover_deliveries(
            session,
            ctx,
            subscription_id=str(input.subscription_id),
            since=input.since,
            until=input.until,
        ),
    )
    if outcome.value is None:
        return RecoverWebhookDeliveriesPayload(
            subscription=None, recovered_count=0, user_errors=outcome.user_errors
        )
    row, count = outcome.value
    if count:
        info.context.services.webhook_dispatcher.wake()
    return RecoverWebhookDeliveriesPayload(
        subscription=WebhookSubscription.from_row(row), recovered_count=count, user_errors=[]
    )


async def send_test_webhook(info: Info, input: SendTestWebhookInput) -> SendTestWebhookPayload:
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.send_test(
            session, ctx, subscription_id=str(input.subscription_id), event_type=input.event_type
        ),
    )
    if outcome.value is not None:
        info.context.services.webhook_dispatcher.wake()
    return SendTestWebhookPayload(
        delivery=outcome.map(lambda row: WebhookDelivery.from_row(row, attempts=[])),
        user_errors=outcome.user_errors,
    )


@strawberry.type
class WebhooksQuery:
    webhook_subscriptions: WebhookSubscriptionConnection | None = strawberry.field(
        resolver=resolve_webhook_subscriptions,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="The tenant's outbound webhook subscriptions, newest first. "
        "Requires `webhooks:read`.",
    )

    webhook_deliveries: WebhookDeliveryConnection | None = strawberry.field(
        resolver=resolve_webhook_deliveries,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="The webhook delivery log, both directions, newest first. "
        "Requires `webhooks:read`.",
    )

    webhook_event_types: list[WebhookEventType] | None = strawberry.field(
        resolver=resolve_webhook_event_types,
        extensions=requires(Scope.WEBHOOKS_READ),
        description="Every event type a webhook subscription can name, with the JSON Schema "
        "of its `data` and an example. Requires `webhooks:read`.",
    )


@strawberry.type
class WebhooksMutation:
    create_webhook_subscription: CreateWebhookSubscriptionPayload | None = strawberry.mutation(
        resolver=create_webhook_subscription,
        extensions=requires(ACTION_SCOPES["createWebhookSubscription"]),
        description="Send events of a type (or `*`) to an HTTPS endpoint, signed with a "
        "`whsec_` secret (generated into the vault unless `signingSecretRef` names one). "
        "Requires `webhooks:write`.",
    )

    update_webhook_subscription: UpdateWebhookSubscriptionPayload | None = strawberry.mutation(
        resolver=update_webhook_subscription,
        extensions=requires(ACTION_SCOPES["updateWebhookSubscription"]),
        description="Change a subscription's endpoint, event type, description, retry "
        "schedule, or switch it on or off. Requires `webhooks:write`.",
    )

    rotate_webhook_signing_secret: RotateWebhookSigningSecretPayload | None = strawberry.mutation(
        resolver=rotate_webhook_signing_secret,
        extensions=requires(ACTION_SCOPES["rotateWebhookSigningSecret"]),
        description="A new signing secret version; the old one keeps signing alongside "
        "for 24 h. Requires `webhooks:write`.",
    )

    replay_webhook_delivery: ReplayWebhookDeliveryPayload | None = strawberry.mutation(
        resolver=replay_webhook_delivery,
        extensions=requires(ACTION_SCOPES["replayWebhookDelivery"]),
        description="Send a delivery's preserved payload again as a new delivery with the same "
        "`webhook-id`. Requires `webhooks:replay`.",
    )

    recover_webhook_deliveries: RecoverWebhookDeliveriesPayload | None = strawberry.mutation(
        resolver=recover_webhook_deliveries,
        extensions=requires(ACTION_SCOPES["recoverWebhookDeliveries"]),
        description="After an endpoint outage: send every FAILED delivery of a subscription "
        "created in `[since, until)` again (same `webhook-id`s), audited once with the count. "
        "Requires `webhooks:replay`.",
    )

    send_test_webhook: SendTestWebhookPayload | None = strawberry.mutation(
        resolver=send_test_webhook,
        extensions=requires(ACTION_SCOPES["sendTestWebhook"]),
        description='Send a signed example of an event type (marked `"test": true`) to a '
        "subscription's endpoint; it is logged like any delivery. Requires `webhooks:write`.",
    )
