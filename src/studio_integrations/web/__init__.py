"""GraphiQL and the live External Health dashboard, served from this package (DESIGN §12).

The pages are built from ``web/`` at the repository root (``make web``: vite, with a lock
file) into ``static/``, which is committed and shipped in the wheel, so a browser that cannot
reach a CDN still gets a working IDE: every asset comes from ``/static/`` on this host, and
the pages' Content-Security-Policy lets them talk to this origin only. The pages themselves
are public; every operation they run needs a bearer token (typed into the page, kept in the
browser's localStorage).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
DASHBOARD_PATH = "/dashboard"

# Same origin only: scripts, styles, fonts, workers and the GraphQL HTTP/WebSocket calls.
# Monaco (GraphiQL's editor) sets inline styles and builds data: fonts/images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@cache
def _page(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def page_response(name: str) -> Response:
    """One of the built HTML pages (``graphiql.html``, ``dashboard.html``), not cached by the
    browser (it names the hashed assets of this build)."""
    return HTMLResponse(
        _page(name),
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def graphiql_page() -> Response:
    return page_response("graphiql.html")


async def _dashboard(_request: Request) -> Response:
    return page_response("dashboard.html")


def web_routes() -> list[BaseRoute]:
    """``/dashboard`` and the built assets under ``/static/``."""
    return [
        Route(DASHBOARD_PATH, _dashboard, methods=["GET"]),
        Mount(STATIC_PATH, app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
