"""webhookSubscriptions and webhookDeliveries queries; createWebhookSubscription,
updateWebhookSubscription, rotateWebhookSigningSecret, replayWebhookDelivery."""

from __future__ import annotations

from typing import TypeVar, cast

from strawberry.scalars import JSON

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
