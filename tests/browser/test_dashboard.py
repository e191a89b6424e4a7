"""The External Health dashboard in headless Chromium: live health changes and failures,
driven by the real prober against a fake provider on loopback."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from studio_integrations.workers.health_prober import HealthProber
from tests.browser.conftest import Tab, until
from tests.conftest import TokenFactory
from tests.connections.conftest import VERIFY_PATH, World
from tests.fakes.provider import Reply
from tests.health.conftest import PROBE_INTERVAL, Clock, establish
from tests.support.live import LiveServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

PAGE_MS = 30_000  # the first paint on a shared CI machine
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
    bus = server.services.bus
    await until(lambda: bus.local_subscribers("acme") == 2, "the dashboard's subscriptions")
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
