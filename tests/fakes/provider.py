"""A programmable fake provider API: a real HTTP server (uvicorn + Starlette) on loopback.

- ``on(path, *replies, method=None)`` programs a path: each request takes the next ``Reply``
  (status, JSON or raw body or an echo of the request, headers, delay before answering); the
  last one repeats. An unprogrammed path answers 404.
- Every request is recorded in ``requests`` (method, path, query, headers, body, the
  client's port — which tells whether a connection was reused).
- ``enable_oauth(client_id, client_secret, …)`` adds an OAuth2 client-credentials token
  endpoint (RFC 6749 §4.4; client authentication by HTTP Basic or in the body, as chosen)
  that issues expiring random tokens and counts issuances (``tokens_issued``);
  ``protect(path)`` makes a path answer 401 unless it carries a live issued token;
  ``revoke_tokens()`` invalidates every token issued so far.
- ``require_key(path, header, accepted)`` makes a path answer 401 unless the header carries
  one of the accepted values (a provider that accepts only certain API keys); change
  ``accepted`` at any time.
- ``unused_port()`` gives a loopback port nothing listens on (connection refused), and a
  ``Reply(delay=…)`` longer than the client's timeout produces a timeout.

``running()`` serves over HTTP (``tests.support.live``); ``running(tls=…)`` over HTTPS with
a ``trustme`` certificate (``tests.fakes.tls``), for checks of SNI and certificate names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.tls import TlsFiles, serve_https
from tests.support.live import serve

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    echo: bool = False  # answer the request's headers and query as the JSON body


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client_port: int | None

    @property
    def params(self) -> dict[str, str]:
        return dict(self.query)


@dataclass
class OAuthServer:
    client_id: str
    client_secret: str = field(repr=False)
    client_auth: str  # "basic", "body" or "either"
    expires_in: int
    scope: str | None
    token_path: str
    tokens: dict[str, float] = field(default_factory=dict, repr=False)  # token -> expiry
    issued: int = 0


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self.base_url = ""
        self.oauth: OAuthServer | None = None
        self._programs: dict[tuple[str | None, str], list[Reply]] = {}
        self._protected: set[str] = set()
        self._keyed: dict[str, tuple[str, set[str]]] = {}
        self.app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=ALL_METHODS)],
        )

    # -- programming ----------------------------------------------------------------------

    def on(self, path: str, *replies: Reply, method: str | None = None) -> None:
        """Answer ``path`` with ``replies`` in turn (the last one repeats)."""
        self._programs[(method, path)] = list(replies) or [Reply()]

    def protect(self, path: str) -> None:
        self._protected.add(path)

    def require_key(self, path: str, accepted: set[str], header: str = "X-API-Key") -> set[str]:
        """401 on ``path`` unless ``header`` is one of ``accepted`` (returned: mutate it)."""
        self._keyed[path] = (header.lower(), accepted)
        return accepted

    def enable_oauth(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_path: str = "/oauth/token",
        expires_in: int = 3600,
        client_auth: str = "basic",
        scope: str | None = None,
    ) -> OAuthServer:
        self.oauth = OAuthServer(
            client_id, client_secret, client_auth, expires_in, scope, token_path
        )
        return self.oauth

    def revoke_tokens(self) -> None:
        assert self.oauth is not None
        self.oauth.tokens.clear()

    @property
    def tokens_issued(self) -> int:
        return self.oauth.issued if self.oauth else 0

    def seen(self, path: str | None = None, method: str | None = None) -> list[SeenRequest]:
        return [
            r
            for r in self.requests
            if (path is None or r.path == path) and (method is None or r.method == method)
        ]

    # -- serving --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(
        self, *, tls: TlsFiles | None = None, name: str = "127.0.0.1"
    ) -> AsyncIterator[FakeProvider]:
        """Serve on 127.0.0.1; ``base_url`` names the server as ``name`` (with ``tls``, a
        name the certificate holds)."""
        if tls is None:
            async with serve(self.app) as live:
                self.base_url = f"http://{name}:{live.port}"
                yield self
        else:
            async with serve_https(self.app, tls) as port:
                self.base_url = f"https://{name}:{port}"
                yield self

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = "/" + request.path_params["path"]
        seen = SeenRequest(
            method=request.method,
            path=path,
            query=parse_qsl(request.url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            client_port=request.client.port if request.client else None,
        )
        self.requests.append(seen)
        if self.oauth is not None and path == self.oauth.token_path and seen.method == "POST":
            return self._token(seen)
        if path in self._protected and not self._token_ok(seen):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        keyed = self._keyed.get(path)
        if keyed is not None and seen.headers.get(keyed[0]) not in keyed[1]:
            return JSONResponse({"error": "invalid_api_key"}, status_code=401)
        program = self._programs.get((seen.method, path)) or self._programs.get((None, path))
        if program is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        reply = program.pop(0) if len(program) > 1 else program[0]
        if reply.delay and await _gone_within(request, reply.delay):
            return Response(status_code=499)  # nobody to answer (and the server may stop)
        if reply.echo:
            echoed = {"headers": seen.headers, "query": seen.query}
            return JSONResponse(echoed, status_code=reply.status, headers=reply.headers)
        if reply.json is not None:
            return JSONResponse(reply.json, status_code=reply.status, headers=reply.headers)
        return Response(reply.body or b"", status_code=reply.status, headers=reply.headers)

    # -- OAuth2 client credentials ------------------------------------------------------------

    def _token(self, seen: SeenRequest) -> Response:
        oauth = self.oauth
        assert oauth is not None
        form = dict(parse_qsl(seen.body.decode(), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        client = _basic_client(seen.headers.get("authorization"))
        if client is None and oauth.client_auth in ("body", "either"):
            client = (form.get("client_id", ""), form.get("client_secret", ""))
        if oauth.client_auth == "body" and "authorization" in seen.headers:
            client = None
        if client != (oauth.client_id, oauth.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if oauth.scope is not None and form.get("scope") != oauth.scope:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = "tok-" + secrets.token_urlsafe(16)
        oauth.tokens[token] = time.monotonic() + oauth.expires_in
        oauth.issued += 1
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": oauth.expires_in},
            headers={"Cache-Control": "no-store"},
        )

    def _token_ok(self, seen: SeenRequest) -> bool:
        if self.oauth is None:
            return False
        scheme, _, token = seen.headers.get("authorization", "").partition(" ")
        expiry = self.oauth.tokens.get(token)
        return scheme.lower() == "bearer" and expiry is not None and time.monotonic() < expiry


def _basic_client(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except ValueError:
        return None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        return None
    return unquote_plus(client_id), unquote_plus(client_secret)


def basic_credentials(header: str) -> tuple[str, str]:
    """The (user, password) of an ``Authorization: Basic …`` header, for assertions."""
    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


def unused_port() -> int:
    """A loopback port nothing listens on (the OS just handed it out and it was released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def json_body(seen: SeenRequest) -> Any:
    return json.loads(seen.body)


async def _gone_within(request: Request, seconds: float) -> bool:
    """Wait ``seconds``, or less if the client hangs up first (a client that timed out or was
    cancelled): True if it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    return False
