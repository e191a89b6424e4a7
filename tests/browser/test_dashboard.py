"""The External Health dashboard in headless Chromium: live health changes and failures,
driven by the real prober against a fake provider on loopback."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import WebSocketRoute

from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import FailureCategory
from studio_integrations.domain.failures import record_failure
from studio_integrations.persistence.db import TenantScope
from studio_integrations.workers.health_prober import HealthProber
from tests.browser.conftest import Tab
from tests.conftest import TokenFactory
from tests.connections.conftest import VERIFY_PATH, World
from tests.fakes.provider import Reply
from tests.health.conftest import PROBE_INTERVAL, Clock, establish
from tests.support.live import LiveServer
from tests.support.waiting import until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

PAGE_MS = 60_000  # the first paint on a loaded machine (a hang guard)
LIVE_MS = 2_000  # an event must show within 2 s of happening
REREAD_MS = 10_000  # the page's re-read of the whole state after events (an HTTP query)


async def test_dashboard_shows_a_health_change_and_a_failure_live(
    server: LiveServer,
    http: httpx.AsyncClient,
    world: World,
    prober: HealthProber,
    clock: Clock,
    tab: Tab,
) -> None:
    connection_id = await establish(http, world)  # its live test passed: HEALTHY
    page = tab.page
    await page.goto(f"{server.url}/dashboard")
    await page.wait_for_selector('#live[data-state="idle"]', timeout=PAGE_MS)
    assert "Paste a bearer token" in await page.inner_text("#message")

    await page.fill("#token", world.token)
    await page.press("#token", "Enter")
    row = f'#connections tr[data-connection-id="{connection_id}"]'
    await page.wait_for_selector(
        f'{row}[data-status="HEALTHY"][data-circuit="CLOSED"]', timeout=PAGE_MS
    )
    await page.wait_for_selector('#live[data-state="live"]', timeout=PAGE_MS)
    assert await page.locator("#failures li[data-failure-id]").count() == 0
    # Both live operations (health, failures) are subscribed before anything happens.
    live = server.services.live_subscribers
    await until(lambda: live("acme") == 2, "the dashboard's subscriptions")
    await tab.screenshot("dashboard-healthy")

    # The provider starts failing; the prober's next probe fails: DEGRADED and a failure.
    world.fake.on(VERIFY_PATH, Reply(500, json={"error": "boom"}))
    clock.advance(PROBE_INTERVAL)
    assert await prober.probe_once() == 1
    await page.wait_for_selector(f'{row}[data-status="DEGRADED"]', timeout=LIVE_MS)
    failure = page.locator('#failures li[data-failure-id][data-category="SERVER_ERROR"]')
    await failure.first.wait_for(timeout=LIVE_MS)
    assert await failure.count() == 1
    text = await failure.first.inner_text()
    assert "HR production" in text
    assert await failure.first.locator("a", has_text="run").count() == 1  # to the run
    # The provider and the groups follow with the re-read.
    await page.wait_for_selector(
        '#failure-groups [data-category="SERVER_ERROR"]', timeout=REREAD_MS
    )
    await page.wait_for_selector('#providers tr[data-status="DEGRADED"]', timeout=REREAD_MS)
    await tab.screenshot("dashboard-degraded")

    # Two more failed probes: UNHEALTHY (the last 3 probes failed).
    for _ in range(2):
        clock.advance(PROBE_INTERVAL)
        assert await prober.probe_once() == 1
    await page.wait_for_selector(f'{row}[data-status="UNHEALTHY"]', timeout=LIVE_MS)
    await page.wait_for_function(
        "() => document.querySelectorAll('#failures li[data-failure-id]').length === 3",
        timeout=LIVE_MS,
    )
    # The re-read after the events: the provider and the group agree with the feed.
    await page.wait_for_selector('#providers tr[data-status="UNHEALTHY"]', timeout=REREAD_MS)
    await page.wait_for_selector(
        '#failure-groups [data-category="SERVER_ERROR"][data-count="3"]', timeout=REREAD_MS
    )
    await tab.screenshot("dashboard-unhealthy")
    assert tab.blocked == []


async def test_dashboard_says_when_it_is_disconnected(
    server: LiveServer, make_token: TokenFactory, tab: Tab
) -> None:
    """The server closes the live socket when the token expires (4401): the page says it is
    disconnected and why, and dims what may now be stale."""
    page = tab.page
    await page.goto(f"{server.url}/dashboard#token={make_token(ttl=timedelta(seconds=2))}")
    await page.wait_for_selector('#live[data-state="disconnected"]', timeout=PAGE_MS)
    assert "Token refused or expired" in await page.inner_text("#message")
    assert await page.evaluate("document.body.classList.contains('disconnected')")
    assert "#token" not in page.url  # the token left the address bar
    await tab.screenshot("dashboard-disconnected")
    assert tab.blocked == []


async def test_dashboard_resumes_its_streams_after_a_dropped_socket(
    server: LiveServer, make_token: TokenFactory, tab: Tab
) -> None:
    """A dropped socket reconnects and each stream subscribes again with `after`: the cursor
    of the last item it showed, so what was committed meanwhile is replayed in order."""
    page = tab.page
    subscribes: list[tuple[int, dict[str, Any]]] = []  # (connection number, payload)
    pushed: list[dict[str, Any]] = []  # failures the server pushed
    routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        routes.append((ws, upstream))
        number = len(routes)

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "subscribe":
                subscribes.append((number, frame["payload"]))
            upstream.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            item = (frame.get("payload") or {}).get("data") or {}
            if frame.get("type") == "next" and "integrationFailures" in item:
                pushed.append(item["integrationFailures"])
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    await page.route_web_socket(re.compile(r".*/graphql$"), route)
    services = server.services
    await page.goto(f"{server.url}/dashboard#token={make_token()}")
    await page.wait_for_selector('#live[data-state="live"]', timeout=PAGE_MS)
    await until(lambda: services.live_subscribers("acme") == 2, "both subscriptions")

    async def fail(message: str) -> None:
        async with services.db.transaction(TenantScope.of("acme")) as session:
            await record_failure(
                session,
                ActionContext.system("acme"),
                policy=services.health_policy,
                category=FailureCategory.SERVER_ERROR,
                message=message,
                connection_id=None,
            )

    await fail("before the drop")
    await until(lambda: len(pushed) == 1, "the first failure pushed")
    cursor = pushed[0]["cursor"]
    assert cursor.startswith("evc_")

    # The socket drops (a restarting server's 1012: the client reconnects).
    page_side, upstream = routes[-1]
    await page_side.close(code=1012, reason="restart")
    await upstream.close()
    await fail("while away")
    await until(lambda: sum(n == 2 for n, _ in subscribes) == 2, "both streams resubscribed")
    resumed = {
        p["query"].split("(")[0].split()[-1]: p["variables"] for n, p in subscribes if n == 2
    }
    assert resumed["DashboardFailures"] == {"after": cursor}
    await page.wait_for_selector('#live[data-state="live"]', timeout=PAGE_MS)
    await until(lambda: [p["message"] for p in pushed][-1] == "while away", "the replay")
    await page.wait_for_function(
        "() => document.querySelectorAll('#failures li[data-failure-id]').length === 2",
        timeout=REREAD_MS,
    )
    assert tab.blocked == []
