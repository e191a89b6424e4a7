"""webhookSubscriptions and webhookDeliveries queries; createWebhookSubscription,
updateWebhookSubscription, rotateWebhookSigningSecret, replayWebhookDelivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from strawberry.scalars import JSON

from studio_integrations.core.context import ActionContext
from studio_integrations.core.errors import UserInputError, UserInputErrors
from studio_integrations.domain import webhooks as domain
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers.governed import run_governed
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError
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


async def _with_sessions(
    info: Info, action: Callable[[TenantSessions, ActionContext], Awaitable[T]]
) -> tuple[T | None, list[UserError]]:
    """Actions that call the vault manage their own sessions (no transaction is held over
    the call); validation failures come back as userErrors, like ``run_governed``'s."""
    sessions = TenantSessions(info.context.services.db, info.context.scope)
    try:
        return await action(sessions, info.context.action_context()), []
    except UserInputErrors as exc:
        return None, [UserError.from_exception(e) for e in exc.errors]
    except UserInputError as exc:
        return None, [UserError.from_exception(exc)]


async def create_webhook_subscription(
    info: Info, input: CreateWebhookSubscriptionInput
) -> CreateWebhookSubscriptionPayload:
    definition = input.to_domain()
    services = info.context.services
    row, errors = await _with_sessions(
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
        subscription=WebhookSubscription.from_row(row) if row else None, user_errors=errors
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
        subscription=WebhookSubscription.from_row(outcome.value) if outcome.value else None,
        user_errors=outcome.user_errors,
    )


async def rotate_webhook_signing_secret(
    info: Info, input: RotateWebhookSigningSecretInput
) -> RotateWebhookSigningSecretPayload:
    subscription_id = str(input.id)
    vault = info.context.services.vault
    row, errors = await _with_sessions(
        info,
        lambda sessions, ctx: domain.rotate_signing_secret(
            sessions, ctx, vault=vault, subscription_id=subscription_id
        ),
    )
    return RotateWebhookSigningSecretPayload(
        subscription=WebhookSubscription.from_row(row) if row else None, user_errors=errors
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
        delivery=WebhookDelivery.from_row(outcome.value, attempts=[]) if outcome.value else None,
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
        delivery=WebhookDelivery.from_row(outcome.value, attempts=[]) if outcome.value else None,
        user_errors=outcome.user_errors,
    )
