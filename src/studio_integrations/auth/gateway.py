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
import heapq
import math
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


class ExpiryWheel:
    """One timer for the token expiry of every socket of a process (per event loop).

    Sockets are kept in buckets by deadline (rounded up to ``resolution`` seconds: JWT
    ``exp`` is whole seconds, so tokens minted together share one), and one loop timer is
    set for the earliest bucket. An idle socket costs a set entry here instead of a task
    asleep on its deadline (and the two tasks per ``receive`` the first version used)."""

    def __init__(self, *, resolution: float = 0.1) -> None:
        self.resolution = resolution
        self._buckets: dict[float, set[SocketExpiry]] = {}
        self._heap: list[float] = []  # bucket keys; a key whose bucket emptied is skipped
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def add(self, expiry: SocketExpiry, expires_at: datetime) -> float:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (test suites): the old one's timer is gone
            self._loop, self._buckets, self._heap = loop, {}, []
            self._timer = self._timer_at = None
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        deadline = loop.time() + max(remaining, 0.0)
        key = math.ceil(deadline / self.resolution) * self.resolution
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            heapq.heappush(self._heap, key)
        bucket.add(expiry)
        if self._timer_at is None or key < self._timer_at:
            self._schedule(loop, key)
        return key

    def discard(self, expiry: SocketExpiry, key: float) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(expiry)
            if not bucket:
                del self._buckets[key]

    def _schedule(self, loop: asyncio.AbstractEventLoop, key: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = key
        self._timer = loop.call_at(key, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        while self._heap and self._heap[0] <= now:
            key = heapq.heappop(self._heap)
            for expiry in self._buckets.pop(key, ()):
                expiry.expire()
        while self._heap and self._heap[0] not in self._buckets:
            heapq.heappop(self._heap)
        if self._heap:
            self._schedule(loop, self._heap[0])


class SocketExpiry:
    """Wraps a WebSocket's ASGI channel so the socket can be closed at a deadline.

    When the deadline passes (``ExpiryWheel``), the app's pending ``receive`` is
    interrupted: the client gets a 4401 close frame and ``receive`` reports a disconnect, so
    Strawberry tears down the socket's subscriptions through its normal path. Later sends
    from the app are dropped. No task is kept per socket: ``receive`` awaits the server's
    own, and the wheel cancels it (the cancellation is taken back, as ``asyncio.timeout``
    does, so only this wrapper sees it).
    """

    __slots__ = (
        "_interrupting",
        "_key",
        "_max_depth",
        "_receive",
        "_receiver",
        "_send",
        "_wheel",
        "close_code",
        "closed",
        "expired",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        wheel: ExpiryWheel | None = None,
    ) -> None:
        self._receive = receive
        self._send = send
        self._max_depth = max_json_depth
        self._wheel = wheel if wheel is not None else ExpiryWheel()
        self._key: float | None = None
        self._receiver: asyncio.Task[Any] | None = None  # the task awaiting ``receive``
        self._interrupting = False
        self.expired = False
        self.closed = False
        self.close_code = TOKEN_EXPIRED_CLOSE

    def arm(self, expires_at: datetime | None) -> None:
        if expires_at is None:
            return
        self.disarm()
        self._key = self._wheel.add(self, expires_at)

    def disarm(self) -> None:
        if self._key is not None:
            self._wheel.discard(self, self._key)
            self._key = None

    def expire(self) -> None:
        """The token's deadline has passed (called by the wheel)."""
        self._key = None
        self.expired = True
        if self._receiver is not None and not self._interrupting:
            self._interrupting = True
            self._receiver.cancel()

    async def receive(self) -> Message:
        while not self.closed:
            if self.expired:
                await self._close(TOKEN_EXPIRED_CLOSE, "token expired")
                break
            task = asyncio.current_task()
            self._receiver = task
            try:
                message = await self._receive()
            except asyncio.CancelledError:
                if not self._interrupting or task is None or task.uncancel() > 0:
                    raise  # someone else's cancellation (too)
                continue  # the wheel's: close below
            finally:
                self._receiver = None
                self._interrupting = False
            refusal = self._refusal(message)
            if refusal is None:
                return message
            await self._close(INVALID_MESSAGE_CLOSE, refusal)
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
        self.disarm()
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
        self.expiry_wheel = ExpiryWheel()

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
            expiry = SocketExpiry(
                receive, send, max_json_depth=self._max_depth, wheel=self.expiry_wheel
            )
            state[EXPIRY_STATE] = expiry
            try:
                await self._app(scope, expiry.receive, expiry.send)
            finally:
                expiry.disarm()
        else:  # pragma: no cover - lifespan is handled by Starlette
            await self._app(scope, receive, send)
