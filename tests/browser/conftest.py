"""Headless Chromium (Debian's ``chromium``, driven by Python Playwright) for the browser
tests (DESIGN §10): a fresh profile per test and every request that is not for a loopback
address refused and recorded, so a page that reaches for a CDN fails its test.

Screenshots go to one temporary directory per session, printed at the end of the run (CI
keeps them as artifacts). Without the browser the tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Route, async_playwright

from tests.connections.conftest import fake, world  # noqa: F401  (fixtures)
from tests.health.conftest import clock, prober  # noqa: F401  (fixtures)
from tests.support.backends import unavailable

CHROMIUM = os.environ.get("STUDIO_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
_ARTIFACTS: list[Path] = []


def artifacts_dir() -> Path:
    if not _ARTIFACTS:
        _ARTIFACTS.append(Path(tempfile.mkdtemp(prefix="studio-browser-")))
    return _ARTIFACTS[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _ARTIFACTS:
        terminalreporter.write_line(f"browser screenshots: {_ARTIFACTS[0]}")


@dataclass
class Tab:
    """A page in a fresh browser context, and the off-host requests it tried to make."""

    page: Page
    context: BrowserContext
    blocked: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> Path:
        path = artifacts_dir() / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture
async def tab(tmp_path: Path) -> AsyncIterator[Tab]:
    """Chromium with a fresh ``--user-data-dir`` (Playwright's persistent context is how it
    takes one) and a route that lets only loopback requests through."""
    if shutil.which(CHROMIUM) is None:
        unavailable(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=LAUNCH_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        page = context.pages[0] if context.pages else await context.new_page()
        result = Tab(page=page, context=context)

        async def only_loopback(route: Route) -> None:
            parts = urlsplit(route.request.url)
            if parts.scheme in {"data", "blob"} or (parts.hostname or "") in LOOPBACK_HOSTS:
                await route.continue_()
            else:
                result.blocked.append(route.request.url)
                await route.abort("blockedbyclient")

        await context.route("**/*", only_loopback)
        try:
            yield result
        finally:
            await context.close()
