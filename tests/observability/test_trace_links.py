"""Trace links: runs, failures, deliveries and audit events carry the trace id of the request
that caused them, and ``traceUrl`` from STUDIO_TRACE_URL_TEMPLATE."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from studio_integrations.schema.observability import trace_url
from studio_integrations.settings import WORKERS, Settings
from tests.conftest import TokenFactory, make_settings
from tests.connections.conftest import (
    ESTABLISH,
    GOOD_KEY,
    VERIFY_PATH,
    establish_input,
    ok,
    register_fake_provider,
    register_secret_credential,
    stop_prober,
)
from tests.fakes.provider import FakeProvider, Reply
from tests.fakes.receiver import WebhookReceiver
from tests.support.backends import Backend
from tests.support.live import LiveServer
from tests.webhooks.conftest import create_subscription, eventually

TEMPLATE = "https://grafana.example/explore?traceId={traceId}"
TRACE_ID = "6cf92f3577b34da6a3ce929d0e0e4738"
TRACEPARENT = f"00-{TRACE_ID}-20f067aa0ba902b9-01"
LINK = f"https://grafana.example/explore?traceId={TRACE_ID}"

TEST = """
mutation ($id: ID!) {
  testConnection(input: {id: $id}) { run { id status traceId traceUrl } userErrors { code } }
}
"""
LINKS = """
query {
  integrationFailures(first: 10) { nodes { category traceId traceUrl run { traceId } } }
  webhookDeliveries(first: 10, filter: {eventType: "IntegrationConnectionTested"}) {
    nodes { status traceId traceUrl }
  }
  auditEvents(filter: {types: ["IntegrationConnectionTested"]}) {
    nodes { traceId traceUrl }
  }
}
"""


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, trace_url_template=TEMPLATE, workers=WORKERS)


async def test_a_failed_test_run_links_its_run_failure_delivery_and_event(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    fake: FakeProvider,
    receiver: WebhookReceiver,
) -> None:
    await stop_prober(server.services)
    token = make_token(tenant="acme")
    fake.require_key(VERIFY_PATH, {GOOD_KEY})
    fake.on(VERIFY_PATH, Reply(status=500, json={"error": "down"}))
    provider_id = await register_fake_provider(http, token, fake.base_url)
    credential_id = await register_secret_credential(http, token, server.services.vault)
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(provider_id, credential_id, runTest=False)},
        token,
    )
    connection = data["establishConnection"]["connection"]
    await create_subscription(http, token, receiver.url, eventType="IntegrationConnectionTested")

    response = await http.post(
        "/graphql",
        json={"query": TEST, "variables": {"id": connection["id"]}},
        headers={"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT},
    )
    run = response.json()["data"]["testConnection"]["run"]
    assert run["status"] == "FAILED"
    assert (run["traceId"], run["traceUrl"]) == (TRACE_ID, LINK)
    # The provider was called under that trace too.
    assert TRACE_ID in fake.requests[-1].headers["traceparent"]

    async def delivered() -> dict[str, Any] | None:
        body = await ok(http, LINKS, {}, token)
        nodes = body["webhookDeliveries"]["nodes"]
        return body if nodes and nodes[0]["status"] == "SUCCEEDED" else None

    links = await eventually(delivered, what="the IntegrationConnectionTested delivery")
    [failure] = links["integrationFailures"]["nodes"]
    assert failure["category"] == "SERVER_ERROR"
    assert (failure["traceId"], failure["traceUrl"]) == (TRACE_ID, LINK)
    assert failure["run"]["traceId"] == TRACE_ID
    [delivery] = links["webhookDeliveries"]["nodes"]
    assert (delivery["traceId"], delivery["traceUrl"]) == (TRACE_ID, LINK)
    [event] = links["auditEvents"]["nodes"]
    assert (event["traceId"], event["traceUrl"]) == (TRACE_ID, LINK)


def test_no_template_or_no_trace_id_gives_no_link() -> None:
    def info(template: str | None) -> Any:
        settings = SimpleNamespace(trace_url_template=template)
        return SimpleNamespace(context=SimpleNamespace(services=SimpleNamespace(settings=settings)))

    assert trace_url(info(None), TRACE_ID) is None
    assert trace_url(info(TEMPLATE), None) is None
    assert trace_url(info(TEMPLATE), TRACE_ID) == LINK
