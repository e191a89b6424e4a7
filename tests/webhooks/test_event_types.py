"""webhookEventTypes: every event type with a description, the JSON Schema of its data and an
example; the same definitions check every emitted event (outside production a mismatch is an
error, so any test that emits a malformed event fails)."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator

from studio_integrations.core.context import ActionContext
from studio_integrations.events.catalog import EventShapeError, data_errors
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import STRICT_EVENTS_KEY, emit_event
from studio_integrations.persistence.db import TenantScope
from studio_integrations.services import Services
from tests.support.live import LiveServer
from tests.webhooks.conftest import events_of, ok

QUERY = "{ webhookEventTypes { name description schema example } }"


async def test_every_event_type_is_listed_with_a_schema_its_example_meets(
    server: LiveServer, http: httpx.AsyncClient, token: str
) -> None:
    data = await ok(http, QUERY, {}, token)
    listed = {t["name"]: t for t in data["webhookEventTypes"]}
    assert set(listed) == {t.value for t in EventType}
    for name, entry in listed.items():
        assert entry["description"], name
        Draft202012Validator.check_schema(entry["schema"])
        assert not list(Draft202012Validator(entry["schema"]).iter_errors(entry["example"])), name


async def test_an_emitted_event_that_does_not_match_its_schema_is_refused(
    services: Services,
) -> None:
    ctx = ActionContext.system("acme")
    async with services.db.transaction(TenantScope.of("acme")) as session:
        assert session.info[STRICT_EVENTS_KEY] is True  # not production: strict
        with pytest.raises(EventShapeError, match="category"):
            emit_event(
                session,
                ctx,
                type=EventType.INTEGRATION_FAILURE_RAISED,
                subject_type="IntegrationFailure",
                subject_id="fail_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
                data={"message": "no category"},
            )


async def test_events_emitted_by_the_service_validate(
    server: LiveServer, http: httpx.AsyncClient, token: str
) -> None:
    """A few real actions; their stored events meet the published schemas."""
    await ok(
        http,
        """mutation { createWebhookSubscription(input: {eventType: "*",
          endpointUrl: "https://hooks.example.com/x"}) { subscription { id } } }""",
        {},
        token,
    )
    [created] = await events_of(server.services, "WebhookSubscriptionCreated")
    assert data_errors(created.type, created.data) == []
    assert data_errors("ProviderRegistered", {"n": 1})  # what the plumbing helper sends
