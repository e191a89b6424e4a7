"""With STUDIO_ALLOW_LOOPBACK_TARGETS off (production): loopback, private and metadata
targets are refused when a subscription is saved and again at delivery time."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from studio_integrations.core.enums import DeliveryStatus, FailureCategory
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from tests.conftest import make_settings
from tests.support.backends import Backend
from tests.support.events import emit
from tests.webhooks.conftest import (
    CREATE,
    Clock,
    attempts,
    create_subscription,
    deliveries,
    eventually,
    hand_dispatcher,
    ok,
    webhook_counts,
)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, allow_loopback_targets=False)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "http://hooks.example.com/hook",
    ],
)
async def test_private_targets_are_refused_when_saved(
    services: Services, http: httpx.AsyncClient, token: str, endpoint: str
) -> None:
    before = await webhook_counts(services)
    data = await ok(http, CREATE, {"input": {"eventType": "*", "endpointUrl": endpoint}}, token)
    payload = data["createWebhookSubscription"]
    assert payload["subscription"] is None
    [error] = payload["userErrors"]
    assert (error["field"], error["code"]) == ("input.endpointUrl", "EGRESS_REFUSED")
    assert await webhook_counts(services) == before


async def test_a_public_name_that_resolves_to_loopback_is_refused_at_delivery(
    services: Services, http: httpx.AsyncClient, token: str
) -> None:
    await services.webhook_dispatcher.stop()
    sub = await create_subscription(
        http, token, "https://hooks.example.com/hook", eventType="ProviderRegistered"
    )
    await emit(services, "acme")

    async def fanned() -> list[object] | None:
        return await deliveries(services, subscription_id=sub["id"]) or None  # type: ignore[return-value]

    await eventually(fanned)

    async def rebinding(_host: str, _port: int) -> list[str]:
        return ["127.0.0.1"]

    dispatcher = hand_dispatcher(
        services, Clock(), allow_loopback=False, resolver=rebinding, retry_schedule=(5,)
    )
    assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries(services, subscription_id=sub["id"])
    assert delivery.status is DeliveryStatus.RETRYING
    [attempt] = await attempts(services, delivery.id)
    assert attempt.error_category is FailureCategory.CONFIGURATION
    assert "loopback" in (attempt.error or "")
    assert attempt.resolved_address is None
    assert attempt.http_status is None
