"""Abuse limits that need no GraphQL: rate budgets, the request guard, subscription slots.

Rate budgets (token buckets)
    A budget holds ``capacity`` units and refills continuously at ``capacity`` per
    ``per_seconds``, so a quiet caller may burst up to the full capacity and a busy one is
    held to the average rate. One request may charge several budgets (the tenant's and the
    token's); the charge is all or nothing — a refused request costs no budget anywhere.

    - ``MemoryRateLimiter``: this process only; the embedded default (``memory://`` bus).
    - ``RedisRateLimiter``: when ``STUDIO_BROADCAST_URL`` is ``redis://``/``rediss://``, so
      every replica draws from the same budget. One Lua script reads, refills and charges
      every bucket of a request atomically, using Redis's own clock (``TIME``) so replicas'
      clocks cannot disagree. A token bucket rather than INCR+EXPIRE fixed windows: fixed
      windows let a caller spend two windows' worth at a window edge, and the bucket gives
      an exact ``retryAfter``. When Redis cannot be reached the limiter lets requests
      through and logs a warning: a Redis outage should not take the API down with it.

Request guard (``RequestGuard``, HTTP only)
    Checks a ``/graphql`` request before Strawberry sees it, answering with a GraphQL-shaped
    JSON error (never a 500): bodies over ``max_body_bytes`` (413 ``PAYLOAD_TOO_LARGE``),
    content types other than JSON (415 ``UNSUPPORTED_MEDIA_TYPE``), bytes that are not UTF-8
    JSON (400 ``MALFORMED_JSON``), JSON nested deeper than ``max_json_depth`` (400
    ``JSON_TOO_DEEP``; measured by a scan of the text, before anything parses it
    recursively), batches (a JSON array: 400 ``BATCHING_NOT_SUPPORTED``) and bodies that are
    not a JSON object (400 ``BAD_REQUEST``). The same depth check applies to a GET request's
    ``variables`` and ``extensions`` parameters.

Subscription slots (``SubscriptionSlots``)
    Counts a tenant's live WebSocket operations in this process (per replica).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio_integrations.core.text import find_lone_surrogate

log = logging.getLogger(__name__)


# --- rate budgets ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """One bucket: ``kind`` names it in errors ("tenant" / "token"), ``key`` identifies it."""

    kind: str
    key: str
    capacity: int
    per_seconds: float = 60.0

    @property
    def rate(self) -> float:
        """Units refilled per second."""
        return self.capacity / self.per_seconds


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the refused charge would fit
    refused_by: str | None = None  # the ``kind`` of the budget that refused

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, rounded up (for ``Retry-After``), at least 1 when refused."""
        return max(1, int(-(-self.retry_after // 1))) if not self.allowed else 0


class RateLimiter(Protocol):
    async def take(self, budgets: Sequence[Budget], cost: int = 1) -> RateDecision: ...

    async def aclose(self) -> None: ...


def _charge(cost: int, budgets: Sequence[Budget]) -> int:
    # A single request larger than a whole bucket would never fit: it takes the whole
    # bucket instead (so it is allowed once the bucket is full, and then empties it).
    return max(0, min([cost, *(b.capacity for b in budgets)]))


class MemoryRateLimiter:
    """Token buckets in this process. The critical section has no ``await``, so it is
    atomic under asyncio."""

    MAX_BUCKETS = 100_000

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)

    async def take(self, budgets: Sequence[Budget], cost: int = 1) -> RateDecision:
        budgets = [b for b in budgets if b.capacity > 0]
        if not budgets:
            return RateDecision(True)
        cost = _charge(cost, budgets)
        now = self._clock()
        levels: list[float] = []
        wait, refused_by = 0.0, None
        for budget in budgets:
            tokens, updated = self._buckets.get(budget.key, (float(budget.capacity), now))
            tokens = min(float(budget.capacity), tokens + (now - updated) * budget.rate)
            levels.append(tokens)
            if tokens < cost:
                needed = (cost - tokens) / budget.rate
                if needed > wait:
                    wait, refused_by = needed, budget.kind
        if refused_by is not None:
            return RateDecision(False, wait, refused_by)
        if len(self._buckets) > self.MAX_BUCKETS:
            self._buckets.clear()  # full buckets carry no information; a reset is generous
        for budget, tokens in zip(budgets, levels, strict=True):
            self._buckets[budget.key] = (tokens - cost, now)
        return RateDecision(True)

    async def aclose(self) -> None:
        self._buckets.clear()


# KEYS: bucket keys. ARGV[1]: cost; then per key: capacity, refill per millisecond.
# Returns {allowed (1/0), wait in ms, index of the refusing key (1-based; 0 if allowed)}.
_TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local levels = {}
local wait, refused = 0, 0
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
  levels[i] = tokens
  if tokens < cost then
    local w = math.ceil((cost - tokens) / rate)
    if w > wait then wait = w; refused = i end
  end
end
if refused > 0 then return {0, wait, refused} end
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  redis.call('HSET', key, 'tokens', tostring(levels[i] - cost), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(capacity / rate) + 1000)
end
return {1, 0, 0}
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every replica (see the module docstring)."""

    def __init__(self, url: str, *, namespace: str, timeout: float = 2.0) -> None:
        # ``timeout``: past it a request goes through unlimited (fail open); tests that count
        # what the buckets allow on a loaded machine give Redis longer.
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._script = self._client.register_script(_TAKE_SCRIPT)
        self._namespace = namespace

    async def take(self, budgets: Sequence[Budget], cost: int = 1) -> RateDecision:
        budgets = [b for b in budgets if b.capacity > 0]
        if not budgets:
            return RateDecision(True)
        args: list[float | int] = [_charge(cost, budgets)]
        for budget in budgets:
            args += [budget.capacity, budget.rate / 1000.0]
        keys = [f"{self._namespace}.ratelimit.{b.key}" for b in budgets]
        try:
            allowed, wait_ms, refused = await self._script(keys=keys, args=args)
        except (RedisError, OSError):
            log.warning("rate limiter: Redis unreachable, letting the request through")
            return RateDecision(True)
        if int(allowed):
            return RateDecision(True)
        return RateDecision(False, int(wait_ms) / 1000.0, budgets[int(refused) - 1].kind)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_rate_limiter(broadcast_url: str, *, namespace: str) -> RateLimiter:
    if broadcast_url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(broadcast_url, namespace=namespace)
    return MemoryRateLimiter()


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible key for one bearer token (the token never leaves memory)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


# --- subscription slots ---------------------------------------------------------------


class SubscriptionSlots:
    """Live WebSocket operations per tenant, in this process."""

    def __init__(self) -> None:
        self._live: dict[str, int] = {}

    def acquire(self, tenant_id: str, limit: int) -> bool:
        count = self._live.get(tenant_id, 0)
        if limit > 0 and count >= limit:
            return False
        self._live[tenant_id] = count + 1
        return True

    def release(self, tenant_id: str) -> None:
        count = self._live.get(tenant_id, 0) - 1
        if count > 0:
            self._live[tenant_id] = count
        else:
            self._live.pop(tenant_id, None)

    def live(self, tenant_id: str) -> int:
        return self._live.get(tenant_id, 0)


# --- the request guard ----------------------------------------------------------------


def graphql_error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A GraphQL-shaped error body (``data: null``, one error with ``extensions.code``)."""
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code, **extra}}]},
        status_code=status,
        headers=headers,
    )


class RequestRefused(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> JSONResponse:
        return graphql_error_response(self.status, self.code, self.message, **self.extra)


_JSON_STRUCTURE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def json_depth(text: str, limit: int) -> int:
    """The nesting depth of JSON text, found by a linear scan that skips string contents.

    Stops counting as soon as ``limit`` is exceeded (returning ``limit + 1``), so a hostile
    document costs one pass over its bytes and no recursion.
    """
    depth = deepest = 0
    in_string = False
    for match in _JSON_STRUCTURE.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue  # an escape (outside a string it is invalid JSON anyway) or string text
        elif token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def check_json_text(text: str, max_depth: int, what: str) -> Any:
    if json_depth(text, max_depth) > max_depth:
        raise RequestRefused(
            400, "JSON_TOO_DEEP", f"{what} nests deeper than {max_depth} levels", maxDepth=max_depth
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RequestRefused(400, "MALFORMED_JSON", f"{what} is not valid JSON") from exc
    if (
        "\\u" in text
        and _LONE_SURROGATE_ESCAPE.search(text)
        and find_lone_surrogate(data, "") is not None
    ):
        raise RequestRefused(
            400,
            "INVALID_UNICODE",
            f"{what} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
            "which is not text",
        )
    return data


# A ``\uD800``-``\uDFFF`` escape (paired or not): only then can parsed JSON hold a lone one.
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def ascii_length(value: str | None) -> int | None:
    """A Content-Length header's value, or None unless it is 1-18 ASCII digits (``isdigit``
    also accepts other scripts' digits, which ``int`` may refuse or read)."""
    if value is None or not _ASCII_DIGITS.fullmatch(value):
        return None
    return int(value)


_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


def check_body(body: bytes, headers: Headers, max_depth: int) -> None:
    """Refuse a POST body that Strawberry should never have to parse."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise RequestRefused(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "POST /graphql takes Content-Type: application/json",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRefused(400, "MALFORMED_JSON", "the body is not UTF-8") from exc
    data = check_json_text(text, max_depth, "the body")
    if isinstance(data, list):
        raise RequestRefused(
            400,
            "BATCHING_NOT_SUPPORTED",
            "batched requests (a JSON array) are not supported: send one operation per request",
        )
    if not isinstance(data, dict):
        raise RequestRefused(
            400, "BAD_REQUEST", "the body must be a JSON object with `query` and `variables`"
        )


def check_query_params(params: QueryParams, max_depth: int) -> None:
    for name in ("variables", "extensions"):
        value = params.get(name)
        if value:
            check_json_text(value, max_depth, f"the `{name}` parameter")


class RequestGuard:
    """ASGI wrapper for ``/graphql`` that buffers and checks HTTP requests (see the module
    docstring), then hands the inner app the same body. WebSockets pass through."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int) -> None:
        self._app = app
        self._max_body = max_body_bytes
        self._max_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if scope["method"] == "POST":
                body = await self._read_body(headers, receive)
                check_body(body, headers, self._max_depth)
            else:
                body = b""
                check_query_params(QueryParams(scope.get("query_string", b"")), self._max_depth)
        except RequestRefused as refused:
            await refused.response()(scope, receive, send)
            return
        if scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self._app(scope, replay, send)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        too_large = RequestRefused(
            413,
            "PAYLOAD_TOO_LARGE",
            f"the request body is larger than {self._max_body} bytes",
            maxBytes=self._max_body,
        )
        declared = ascii_length(headers.get("content-length"))
        if declared is not None and declared > self._max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


# --- the header cap -------------------------------------------------------------------


class HeaderSizeLimit:
    """ASGI middleware for every route: a request whose header lines (names and values)
    add up to more than ``max_header_bytes`` is answered 431 ``HEADERS_TOO_LARGE`` (a
    WebSocket upgrade is refused) before any of them is looked at — no token parsing, no
    routing."""

    def __init__(self, app: ASGIApp, *, max_header_bytes: int) -> None:
        self._app = app
        self._max = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            size = 0
            for name, value in scope.get("headers", ()):
                size += len(name) + len(value) + 4  # ": " and CRLF
            if size > self._max:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = graphql_error_response(
                    431,
                    "HEADERS_TOO_LARGE",
                    f"the request's headers are larger than {self._max} bytes",
                    maxBytes=self._max,
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
