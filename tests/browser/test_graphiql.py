"""GraphiQL in headless Chromium, with nothing reachable but this host."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.async_api import Page

from tests.browser.conftest import Tab
from tests.conftest import TokenFactory
from tests.support.events import emit
from tests.support.live import LiveServer
from tests.support.waiting import until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

WAIT_MS = 60_000  # the IDE parses ~4 MB of JavaScript; a hang guard on a loaded machine


async def response_text(page: Page) -> str:
    text = await page.locator(".graphiql-response").inner_text()
    return text.replace("\u00a0", " ")


async def wait_for_response(page: Page, pattern: str) -> str:
    await page.wait_for_function(
        """(pattern) => {
            const el = document.querySelector('.graphiql-response');
            return el && new RegExp(pattern).test(el.innerText.replace(/\\u00a0/g, ' '));
        }""",
        arg=pattern,
        timeout=WAIT_MS,
    )
    return await response_text(page)


async def open_ide(tab: Tab, server: LiveServer, token: str, query: str) -> Page:
    """GraphiQL opened on ``query`` (the page takes it from the URL fragment) with no token
    saved, then the token typed into the page's token field."""
    page = tab.page
    await page.goto(f"{server.url}/graphql#query={quote(query)}")
    await page.wait_for_selector(".graphiql-container", timeout=WAIT_MS)
    state = await page.inner_text("#studio-token-state")
    assert state == "no token: the schema cannot load"
    await page.fill("#studio-token", token)
    await page.press("#studio-token", "Enter")
    await page.wait_for_selector("#studio-token-state.ok", timeout=WAIT_MS)
    # The token remounts the IDE, whose editor loads after the token state shows: a click on
    # "execute" before the editor holds the query ran nothing (seen on a loaded machine).
    first_field = re.findall(r"[A-Za-z_]\w*", query.replace("subscription", ""))[0]
    editor = page.locator(".graphiql-query-editor")
    await editor.get_by_text(first_field).first.wait_for(timeout=WAIT_MS)
    return page


async def test_graphiql_runs_a_query_with_the_token_and_shows_the_docs(
    server: LiveServer, tab: Tab, make_token: TokenFactory
) -> None:
    page = await open_ide(tab, server, make_token(subject="alice"), "{ viewer { subject } }")
    await page.click(".graphiql-execute-button")
    body = await wait_for_response(page, r'"subject": "alice"')
    assert '"errors"' not in body
    assert "tenantId" not in body  # the query asked, not the page's default one

    # The schema loaded with the token (no "Re-fetch"): the Docs list the root fields.
    await page.click('[aria-label="Show Documentation Explorer"]')
    docs = page.locator(".graphiql-doc-explorer")
    await docs.get_by_text("Query", exact=True).first.click()
    await docs.get_by_text("integrationConnections", exact=True).first.wait_for(timeout=WAIT_MS)
    await tab.screenshot("graphiql-query-and-docs")
    assert tab.blocked == []


async def test_graphiql_runs_a_subscription_over_graphql_transport_ws(
    server: LiveServer, tab: Tab, make_token: TokenFactory
) -> None:
    sockets: list[str] = []
    tab.page.on("websocket", lambda ws: sockets.append(ws.url))
    page = await open_ide(
        tab, server, make_token(), "subscription { auditEvents { type subject { id } } }"
    )
    await page.click(".graphiql-execute-button")
    services = server.services
    # The subscription is in place once the hub has its subscriber: then an event must show.
    await until(lambda: services.live_subscribers("acme") == 1, "the IDE's subscription")
    subject_id = "prov_01JD8BR0WSERSUBSCR1PT10N0"
    await emit(services, "acme", subject_id=subject_id)
    body = await wait_for_response(page, re.escape(subject_id))
    assert '"type": "ProviderRegistered"' in body
    assert sockets == [server.ws_url]
    await tab.screenshot("graphiql-subscription")
    assert tab.blocked == []
