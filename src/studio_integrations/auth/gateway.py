"""Authentication in front of the GraphQL app, for HTTP and WebSockets (DESIGN §3).

HTTP: every operation needs a valid bearer token; a missing, malformed, expired or
wrongly-signed one is answered 401 with a GraphQL-shaped body before Strawberry runs. Only
the GraphiQL page itself (a GET asking for HTML, with no query) is served without a token.

WebSockets: the token arrives in ``connection_init`` (``{"authorization": "Bearer …"}``) or
on the upgrade request's ``Authorization`` header; ``StudioGraphQL.on_ws_connect`` verifies it
(4403 when invalid) and arms ``SocketExpiry``, which closes the socket with 4401 when the
token expires — including every subscription running on it. Every text frame is checked
before Strawberry parses it: JSON nested deeper than ``STUDIO_MAX_JSON_DEPTH`` (which would
exhaust the parser's recursion and drop the socket) or holding a lone surrogate closes the
socket with 4400, the code graphql-transport-ws uses for an invalid message.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio_integrations.auth.request_limits import RequestRefused, check_json_text
from studio_integrations.auth.tokens import TokenVerifier, bearer_token
from studio_integrations.core.errors import Unauthenticated

PRINCIPAL_STATE = "principal"
EXPIRY_STATE = "socket_expiry"
TOKEN_EXPIRED_CLOSE = 4401
INVALID_MESSAGE_CLOSE = 4400
DEFAULT_MAX_JSON_DEPTH = 64


def unauthenticated_response(message: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="studio-integrations", error="invalid_token"'},
    )


def _wants_graphiql(request: Request) -> bool:
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and "query" not in request.query_params
    )


class SocketExpiry:
    """Wraps a WebSocket's ASGI channel so the socket can be closed at a deadline.

    When the deadline passes, the client gets a 4401 close frame and the app's next
    ``receive`` reports a disconnect, so Strawberry tears down the socket's subscriptions
    through its normal path. Later sends from the app are dropped.
    """

    def __init__(
        self, receive: Receive, send: Send, *, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    ) -> None:
        self._receive = receive
        self._send = send
        self._max_depth = max_json_depth
        self._deadline: float | None = None
        self._rearmed = asyncio.Event()
        self._pending: asyncio.Future[Message] | None = None  # a receive() not yet consumed
        self.closed = False
        self.close_code = TOKEN_EXPIRED_CLOSE

    def arm(self, expires_at: datetime | None) -> None:
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        self._deadline = loop.time() + max(remaining, 0.0)
        self._rearmed.set()

    async def receive(self) -> Message:
        loop = asyncio.get_running_loop()
        while not self.closed:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._receive())
            timeout = None if self._deadline is None else max(self._deadline - loop.time(), 0)
            rearmed: asyncio.Future[Any] = asyncio.ensure_future(self._rearmed.wait())
            waiting: set[asyncio.Future[Any]] = {self._pending, rearmed}
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            rearmed.cancel()
            if self._pending in done:
                message, self._pending = self._pending.result(), None
                refusal = self._refusal(message)
                if refusal is None:
                    return message
                await self._close(INVALID_MESSAGE_CLOSE, refusal)
                break
            if rearmed in done:
                self._rearmed.clear()
                continue
            await self._close(TOKEN_EXPIRED_CLOSE, "token expired")
        return {"type": "websocket.disconnect", "code": self.close_code}

    def _refusal(self, message: Message) -> str | None:
        """Why a client frame may not reach the protocol handler, or None."""
        if message.get("type") != "websocket.receive":
            return None
        text = message.get("text")
        if text is None:
            data = message.get("bytes")
            if not data:
                return None
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return "the message is not UTF-8"
        try:
            check_json_text(text, self._max_depth, "the message")
        except RequestRefused as refused:
            return refused.message[:120]
        return None

    async def _close(self, code: int, reason: str) -> None:
        self.closed = True
        self.close_code = code
        if self._pending is not None:
            self._pending.cancel()
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def send(self, message: Message) -> None:
        if not self.closed:
            await self._send(message)


class GraphQLGateway:
    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier,
        *,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> None:
        self._app = app
        self._verifier = verifier
        self._max_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = scope.setdefault("state", {})
        if scope["type"] == "http":
            request = Request(scope, receive)
            if not _wants_graphiql(request):
                try:
                    token = bearer_token(request.headers.get("authorization"))
                    state[PRINCIPAL_STATE] = await self._verifier.verify(token)
                except Unauthenticated as exc:
                    await unauthenticated_response(exc.message)(scope, receive, send)
                    return
            await self._app(scope, receive, send)
        elif scope["type"] == "websocket":
            expiry = SocketExpiry(receive, send, max_json_depth=self._max_depth)
            state[EXPIRY_STATE] = expiry
            await self._app(scope, expiry.receive, expiry.send)
        else:  # pragma: no cover - lifespan is handled by Starlette
            await self._app(scope, receive, send)
