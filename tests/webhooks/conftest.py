"""Webhook fixtures: GraphQL documents, a receiver on loopback, a controllable clock, a
dispatcher driven by hand, and helpers to wait for rows the background workers write."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import (
    AuditEvent,
    OutboxMessage,
    VaultSecretVersion,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from studio_integrations.services import Services
from studio_integrations.vault.base import parse_secret_ref
from studio_integrations.workers.webhook_dispatcher import WebhookDispatcher
from tests.conftest import TokenFactory
from tests.fakes.receiver import WebhookReceiver
from tests.support.clock import Clock as BaseClock
from tests.support.graphql import gql
from tests.support.rows import row_counts

T = TypeVar("T")

SUBSCRIPTION_FIELDS = """
  id eventType endpointUrl signingSecretRef signingSecretVersion previousSigningSecretVersion
  previousSecretValidUntil description active retrySchedule effectiveRetrySchedule
  maxDeliveriesPerSecond disabledReason failingSince version
"""

CREATE = f"""
mutation ($input: CreateWebhookSubscriptionInput!) {{
  createWebhookSubscription(input: $input) {{
    subscription {{ {SUBSCRIPTION_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

UPDATE = f"""
mutation ($input: UpdateWebhookSubscriptionInput!) {{
  updateWebhookSubscription(input: $input) {{
    subscription {{ {SUBSCRIPTION_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

ROTATE = f"""
mutation ($id: ID!) {{
  rotateWebhookSigningSecret(input: {{id: $id}}) {{
    subscription {{ {SUBSCRIPTION_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

REPLAY = """
mutation ($id: ID!) {
  replayWebhookDelivery(input: {deliveryId: $id}) {
    delivery { id status messageId replayOfId replayOf { id messageId } }
    userErrors { field code message }
  }
}
"""

DELIVERY_FIELDS = """
  id direction status signatureStatus eventType eventId messageId subscriptionId connectionId
  attemptCount replayOfId payload
  attempts { number httpStatus latencyMs responseExcerpt errorCategory errorMessage
             resolvedAddress url urlHost }
"""

DELIVERIES = f"""
query ($filter: WebhookDeliveryFilter, $first: Int! = 100, $after: String) {{
  webhookDeliveries(filter: $filter, first: $first, after: $after) {{
    nodes {{ {DELIVERY_FIELDS} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

SUBSCRIPTIONS = f"""
query ($filter: WebhookSubscriptionFilter) {{
  webhookSubscriptions(filter: $filter, first: 100) {{
    nodes {{
      {SUBSCRIPTION_FIELDS}
      egressAudit(first: 50) {{
        nodes {{ number attemptedAt urlHost resolvedAddress httpStatus latencyMs errorCategory
                 errorMessage deliveryId }}
      }}
    }}
  }}
}}
"""


async def ok(http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str) -> Any:
    body = await gql(http, query, variables, token=token)
    assert "errors" not in body, body
    return body["data"]


async def create_subscription(
    http: httpx.AsyncClient, token: str, endpoint: str, **over: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"eventType": "CredentialRotated", "endpointUrl": endpoint}
    doc.update(over)
    data = await ok(http, CREATE, {"input": doc}, token)
    payload = data["createWebhookSubscription"]
    assert payload["userErrors"] == [], payload
    subscription: dict[str, Any] = payload["subscription"]
    return subscription


async def signing_secret(services: Services, subscription: dict[str, Any], version: str) -> str:
    ref = parse_secret_ref(subscription["signingSecretRef"])
    return (await services.vault.get_secret(ref.name, version)).value


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy (rows written by background workers
    have no event to await)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def deliveries(services: Services, **where: Any) -> list[WebhookDelivery]:
    async with services.db.session(TenantScope.system_scope()) as session:
        stmt = select(WebhookDelivery).order_by(WebhookDelivery.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(WebhookDelivery, key) == value)
        return list((await session.execute(stmt)).scalars())


async def attempts(services: Services, delivery_id: str) -> list[WebhookDeliveryAttempt]:
    async with services.db.session(TenantScope.system_scope()) as session:
        stmt = (
            select(WebhookDeliveryAttempt)
            .where(WebhookDeliveryAttempt.delivery_id == delivery_id)
            .order_by(WebhookDeliveryAttempt.number)
        )
        return list((await session.execute(stmt)).scalars())


async def subscription_row(services: Services, subscription_id: str) -> WebhookSubscription:
    async with services.db.session(TenantScope.system_scope()) as session:
        row = await session.get(WebhookSubscription, subscription_id)
    assert row is not None
    return row


async def events_of(services: Services, type_: str) -> list[AuditEvent]:
    async with services.db.session(TenantScope.system_scope()) as session:
        stmt = select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars())


async def webhook_counts(services: Services) -> dict[str, int]:
    return await row_counts(
        services.db,
        subscriptions=WebhookSubscription,
        deliveries=WebhookDelivery,
        attempts=WebhookDeliveryAttempt,
        audit=AuditEvent,
        outbox=OutboxMessage,
        vault=VaultSecretVersion,
    )


class Clock(BaseClock):
    """A clock the test moves; starts a little after the real now."""

    def __init__(self) -> None:
        super().__init__(lead=1.0)


def hand_dispatcher(services: Services, clock: Clock, **over: Any) -> WebhookDispatcher:
    """A dispatcher the test drives with ``dispatch_once`` (the background one is stopped)."""
    options: dict[str, Any] = {
        "allow_loopback": True,
        "retry_schedule": (5, 30),
        "disable_after_seconds": 5 * 24 * 3600,
        "lease_seconds": 60,
        "clock": clock,
        "rng": random.Random(7),
        "notify": services.webhook_feed.publish,
    }
    options.update(over)
    return WebhookDispatcher(services.db, services.vault, services.http, **options)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    fake = WebhookReceiver()
    async with fake.running() as running:
        yield running


@pytest.fixture
def token(make_token: TokenFactory) -> str:
    return make_token(tenant="acme")
