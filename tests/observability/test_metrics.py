"""``GET /metrics``: Prometheus text that prometheus_client's own parser reads, with the
request, relay, dispatcher, rate-limit, live-subscription and pool metrics moving under a
small load; bounded labels; the token setting."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from studio_integrations.app import create_app
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
)
from tests.fakes.provider import FakeProvider
from tests.fakes.provider import Reply as ProviderReply
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.providers.conftest import REGISTER_PROVIDER, provider_input
from tests.rotation.conftest import register_credential, rotate
from tests.support.backends import Backend
from tests.support.gqlws import subscribe
from tests.support.graphql import error_codes, gql
from tests.support.live import LiveServer, serve
from tests.webhooks.conftest import create_subscription, eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
LIST = "query ListProviders { providers(first: 5) { nodes { id } } }"


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    # A mutation budget small enough to be refused by the load below.
    return make_settings(backend, tmp_path, token_mutations_per_minute=4, workers=WORKERS)


async def scrape(http: httpx.AsyncClient, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_move_under_a_small_load(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    receiver: WebhookReceiver,
) -> None:
    token = make_token(tenant="acme", scopes="all")
    before = await scrape(http)

    # Requests: three named queries, one unauthenticated request.
    for _ in range(3):
        body = await gql(http, LIST, token=token)
        assert "errors" not in body
    await gql(http, LIST, token=None, expect_status=401)

    # A webhook subscription whose receiver fails once, then takes the retry.
    receiver.answer(Reply(status=503), Reply(status=200))
    await create_subscription(
        http, token, receiver.url, eventType="ProviderRegistered", retrySchedule=[0]
    )
    async with subscribe(
        server.ws_url,
        token,
        'subscription { auditEvents(types: ["ProviderRegistered"]) { type } }',
        live=server.services.live_subscribers,
        tenant_id="acme",
    ) as live:
        registered = await gql(http, REGISTER_PROVIDER, {"input": provider_input()}, token=token)
        assert registered["data"]["registerProvider"]["userErrors"] == []
        assert (await live.next())["auditEvents"]["type"] == "ProviderRegistered"
        await receiver.wait_for(2)
        during = await scrape(http)

    # Mutations beyond the token's budget (4 a minute) are refused.
    refused = 0
    for n in range(4):
        response = await http.post(
            "/graphql",
            json={"query": REGISTER_PROVIDER, "variables": {"input": provider_input(key=f"x{n}")}},
            headers={"Authorization": f"Bearer {token}"},
        )
        refused += error_codes(response.json()) == ["RATE_LIMITED"]
    assert refused >= 1

    async def settled() -> Samples | None:
        samples = await scrape(http)
        sent = value(samples, "studio_webhook_attempts_total", status_class="2xx") - value(
            before, "studio_webhook_attempts_total", status_class="2xx"
        )
        drained = value(samples, "studio_webhook_backlog_deliveries") == 0
        return samples if sent == expected_2xx and drained else None

    # The first event's retry, and one delivery per mutation that was not refused.
    expected_2xx = 1 + (4 - refused)

    after = await eventually(settled, what="the retried delivery's attempt in the metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"operation": "ListProviders", "type": "query", "outcome": "ok"}
    assert delta("studio_requests_total", **ok) == 3
    assert delta("studio_request_duration_seconds_count", **ok) == 3
    assert delta("studio_request_duration_seconds_bucket", le="+Inf", **ok) == 3
    assert (
        delta(
            "studio_requests_total",
            operation="POST /graphql",
            type="http",
            outcome="unauthenticated",
        )
        == 1
    )
    assert delta("studio_webhook_attempts_total", status_class="5xx") == 1
    assert delta("studio_rate_limit_refusals_total", budget="mutations.token") == refused
    assert delta("studio_requests_total", operation="anonymous", type="mutation", outcome="ok") >= 2
    assert delta("studio_relay_published_events") >= 2
    # Live subscriptions while the socket was open, none after.
    assert value(during, "studio_live_subscribers") == 1
    assert value(during, "studio_live_cohorts") == 1
    assert value(after, "studio_live_subscribers") == 0
    # Scrape-time gauges of shared state.
    assert value(after, "studio_relay_backlog_events") == 0
    assert value(after, "studio_webhook_lag_seconds") == 0
    assert value(after, "studio_db_pool_connections", state="size") >= 1
    assert ("studio_circuits", frozenset({("state", "CLOSED")})) in after
    # No tenant or object ids in any label.
    for _name, labels in after:
        for _key, label in labels:
            assert "acme" not in label and not label.startswith(("prov_", "whd_", "whs_"))


async def test_operation_names_are_bounded_labels(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    odd = "query Q { providers(first: 1) { nodes { id } } }"
    await gql(http, odd.replace("query Q", "query " + "X" * 80), token=token)
    samples = await scrape(http)
    names = {dict(labels).get("operation") for name, labels in samples}
    assert "X" * 80 not in names
    assert "other" in names


async def test_a_metrics_token_protects_the_route(backend: Backend, tmp_path: Path) -> None:
    settings = make_settings(backend, tmp_path, metrics_token="scrape-me")
    async with serve(create_app(settings)) as live, httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        await scrape(http, Authorization="Bearer scrape-me")
    off = make_settings(backend, tmp_path, metrics_enabled=False)
    async with serve(create_app(off)) as live, httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/metrics")).status_code == 404


async def test_probes_are_counted_by_outcome(
    backend: Backend, tmp_path: Path, make_token: TokenFactory, fake: FakeProvider
) -> None:
    settings = make_settings(backend, tmp_path, probe_interval_seconds=0.5, workers=WORKERS)
    token = make_token(tenant="acme")
    fake.require_key(VERIFY_PATH, {GOOD_KEY})
    fake.on(VERIFY_PATH, ProviderReply(status=200, json={"ok": True}))
    async with serve(create_app(settings)) as live, httpx.AsyncClient(base_url=live.url) as http:
        provider_id = await register_fake_provider(http, token, fake.base_url)
        credential_id = await register_secret_credential(http, token, live.services.vault)
        before = await scrape(http)
        await ok(http, ESTABLISH, {"input": establish_input(provider_id, credential_id)}, token)

        async def probed() -> Samples | None:
            samples = await scrape(http)
            moved = value(samples, "studio_probe_results_total", outcome="ok") > value(
                before, "studio_probe_results_total", outcome="ok"
            )
            return samples if moved else None

        after = await eventually(probed, what="a counted probe")
    assert value(after, "studio_circuits", state="CLOSED") >= 1


async def test_rotation_outcomes_are_counted(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token(tenant="acme")
    credential_id, _version = await register_credential(
        http, token, server.services.vault, "metrics-secret", "seed", strategy="GENERATED"
    )
    before = await scrape(http)
    # GENERATED with no connection to verify: promoted at once.
    payload = await rotate(http, token, credential_id)
    assert payload["rotation"]["status"] == "PROMOTED"
    after = await scrape(http)
    assert value(after, "studio_rotations_total", outcome="PROMOTED") == (
        value(before, "studio_rotations_total", outcome="PROMOTED") + 1
    )
