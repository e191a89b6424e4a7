"""The GraphiQL and dashboard pages are served from this host only (in-process client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.settings import Settings

HTML = {"Accept": "text/html,application/xhtml+xml"}


class References(HTMLParser):
    """Every URL a page makes the browser load: script src, link href, img src, …"""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value and not (tag == "a" and name == "href"):
                self.urls.append(value)


def settings_for(tmp_path: Path, **over: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'pages.db'}",
        "state_dir": tmp_path / "state",
        "dev_signing_key": "test-signing-key-0123456789abcdef0123456789abcdef",
        "master_key": "test-master-key",
    }
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def assert_local_page(client: httpx.AsyncClient, path: str) -> list[str]:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    parser = References()
    parser.feed(response.text)
    assert parser.urls, "the page loads its scripts and styles"
    for url in parser.urls:
        assert url.startswith("/static/assets/"), f"{path} loads {url} from elsewhere"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
    assert "cdn" not in response.text.lower()
    return parser.urls


async def test_graphiql_page_is_ours_and_loads_only_local_assets(
    client: httpx.AsyncClient,
) -> None:
    urls = await assert_local_page(client, "/graphql")
    assert any(u.endswith(".js") for u in urls) and any(u.endswith(".css") for u in urls)
    page = (await client.get("/graphql", headers=HTML)).text
    assert "unpkg.com" not in page and "jsdelivr" not in page  # not Strawberry's stock page


async def test_dashboard_page_is_public_and_loads_only_local_assets(
    client: httpx.AsyncClient,
) -> None:
    urls = await assert_local_page(client, "/dashboard")
    assert any(u.endswith(".js") for u in urls)


async def test_the_built_assets_only_reach_this_host_at_run_time(
    client: httpx.AsyncClient,
) -> None:
    """The bundles name no other host to load code or styles from (links in help text and
    XML namespaces are not loads; the browser tests block and record any real attempt)."""
    response = await client.get("/graphql", headers=HTML)
    parser = References()
    parser.feed(response.text)
    for url in parser.urls:
        body = (await client.get(url)).text
        for marker in (
            "unpkg.com",
            "cdn.jsdelivr",
            "esm.sh",
            "cdnjs.cloudflare",
            "fonts.googleapis",
        ):
            assert marker not in body, f"{url} refers to {marker}"


async def test_graphiql_page_is_off_in_production_but_the_dashboard_is_not(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, graphiql=False)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        graphiql = await http.get("/graphql", headers=HTML)
        dashboard = await http.get("/dashboard", headers=HTML)
    assert graphiql.status_code != 200 or "graphiql" not in graphiql.text.lower()
    assert dashboard.status_code == 200


async def test_an_unknown_asset_is_a_404_not_a_500(client: httpx.AsyncClient) -> None:
    for path in ("/static/assets/nope.js", "/static/../web/__init__.py", "/static/%2e%2e/app.py"):
        assert (await client.get(path)).status_code == 404, path
