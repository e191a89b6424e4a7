"""create_app(settings) -> Starlette. The lifespan starts the database, bus and workers."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from cross_web import HTTPException
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.execution import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from studio_integrations.auth.gateway import (
    EXPIRY_STATE,
    PRINCIPAL_STATE,
    GraphQLGateway,
    SocketExpiry,
)
from studio_integrations.auth.request_limits import (
    HeaderSizeLimit,
    RequestGuard,
    graphql_error_response,
)
from studio_integrations.auth.tokens import authorization_of, bearer_token
from studio_integrations.core.errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    Unauthenticated,
    is_outage,
)
from studio_integrations.core.trace import current_trace_id
from studio_integrations.graphql_http import (
    GRAPHQL_RESPONSE_MEDIA_TYPE,
    DocumentRefused,
    TrustedDocuments,
    TrustedDocumentsMode,
    failed_before_execution,
    wants_graphql_response,
)
from studio_integrations.persistence.documents import DocumentStore
from studio_integrations.rest.idempotency import IdempotencyGuard
from studio_integrations.rest.inbound import inbound_webhook, recorder_of
from studio_integrations.rest.metrics import METRICS_PATH, metrics_endpoint
from studio_integrations.rest.rotation import ROTATE_PATH, route_app
from studio_integrations.schema.context import StudioContext
from studio_integrations.schema.extensions import SERVICE_UNAVAILABLE
from studio_integrations.schema.schema import schema as default_schema
from studio_integrations.seed.sandbox import sandbox_routes
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from studio_integrations.subscriptions.cohorts import CohortTransportWSHandler
from studio_integrations.subscriptions.transport import BoundedWebSocketProtocol
from studio_integrations.telemetry.asgi import RequestTelemetry
from studio_integrations.telemetry.tracing import configure_tracing
from studio_integrations.web import graphiql_page, web_routes

# How uvicorn serves the WebSocket endpoint (``serve``, the fan-out bench, the subscription
# tests). websockets' sans-I/O protocol; frames up to 1 MiB (an operation document, not a
# stream). No permessage-deflate: with context takeover each socket keeps its own zlib
# compressor and decompressor (~40 KiB measured per idle socket, half of what a subscriber
# cost) and every fan-out frame would be compressed once per socket instead of once per
# cohort; graphql-transport-ws frames are a few hundred bytes, so compression saves little.
WEBSOCKET_SERVER_OPTIONS: dict[str, Any] = {
    "ws": BoundedWebSocketProtocol,  # websockets-sansio, bounded kernel send buffer
    "ws_max_size": 1024 * 1024,
    "ws_per_message_deflate": False,
}

# The cyclic collector's young-generation threshold while serving (``freeze_gc``; Python's
# default is 700). A young collection comes once that many more container objects were made
# than freed, so under load it fires on what requests in flight hold, not on garbage: 16
# Studio pages in flight are ~60,000 live objects, and at 700 each page paid ~8 young, ~0.7
# middle and ~0.07 full collections of them (3-5 ms of its ~25 ms CPU over HTTP, measured
# with gc.callbacks). The cyclic garbage a page leaves (~530 objects, mostly SQLAlchemy
# statement parts) is collected every few dozen pages instead, in a pause of ~20 ms.
GC_YOUNG_THRESHOLD = 50_000

# The share of SHUTDOWN_GRACE_SECONDS that requests in flight get when the server stops.
REQUEST_GRACE_SHARE = 0.3
READY_TIMEOUT_SECONDS = 2.0
log = logging.getLogger(__name__)


_CONTEXT_STATE = "studio_context"
_HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


class _Unavailable(Exception):
    pass


def unavailable_response() -> JSONResponse:
    """HTTP 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After``, GraphQL-shaped."""
    return graphql_error_response(
        503,
        SERVICE_UNAVAILABLE,
        UNAVAILABLE_MESSAGE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _outage(_request: Request, exc: Exception) -> Response:
    if is_outage(exc):
        log.warning("database or bus unavailable: %r", exc)
        return unavailable_response()
    raise exc


def _refusal(status: int, code: str, message: str, *, modern: bool) -> Response:
    """A request refused before execution; in graphql-response+json it has no ``data``."""
    if not modern:
        return graphql_error_response(status, code, message)
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(orjson.dumps(body), status, media_type=GRAPHQL_RESPONSE_MEDIA_TYPE)


class StudioGraphQL(GraphQL[StudioContext, None]):
    # Caps live operations per socket and per tenant (TOO_MANY_SUBSCRIPTIONS) and runs
    # identical subscriptions once per event (cohorts).
    graphql_transport_ws_handler_class = CohortTransportWSHandler

    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = services
        self.documents = TrustedDocuments(
            DocumentStore(services.db), TrustedDocumentsMode(services.settings.trusted_documents)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As Strawberry's, but its HTTP refusals (unknown operation name, missing query, …)
        leave as GraphQL-shaped JSON with an ``extensions.code`` instead of plain text."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        modern = wants_graphql_response(request.headers)
        try:
            response: Response = await self.run(request)
        except HTTPException as exc:
            code = _HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
            response = _refusal(exc.status_code, code, exc.reason, modern=modern)
        except DocumentRefused as exc:
            status = exc.status if modern else exc.legacy_status
            response = _refusal(status, exc.code, exc.message, modern=modern)
        except _Unavailable:
            response = unavailable_response()
        finally:
            context: StudioContext | None = getattr(request.state, _CONTEXT_STATE, None)
            if context is not None:
                await context.end()  # the request's read session and loaders
        if modern:
            response.headers["content-type"] = GRAPHQL_RESPONSE_MEDIA_TYPE
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Not for a GET that names its document by hash only (APQ): clients send those with
        ``Accept: */*``."""
        if request.query_params.get("extensions") is not None:
            return False
        return super().should_render_graphql_ide(request)

    async def parse_http_body(self, request: Any) -> Any:
        """Strawberry's, then the trusted-documents protocol (``graphql_http``) fills in or
        checks the document."""
        data = await super().parse_http_body(request)
        if isinstance(data, list):  # batches are refused by RequestGuard before this
            return data
        data.query = await self.documents.resolve(data.query, data.extensions)
        return data

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        """An operation that failed because the database or bus is down is answered 503.
        With ``Accept: application/graphql-response+json``, a request that failed before
        execution is a 400 without ``data`` (unless a limit already chose its status)."""
        if any(
            (e.extensions or {}).get("code") == SERVICE_UNAVAILABLE for e in result.errors or ()
        ):
            raise _Unavailable
        data = await super().process_result(request, result)
        if failed_before_execution(result) and wants_graphql_response(request.headers):
            data.pop("data", None)
            context: StudioContext | None = getattr(request.state, _CONTEXT_STATE, None)
            if isinstance(context, StudioContext) and isinstance(context.response, Response):
                context.response.status_code = context.response.status_code or 400
        return data

    def encode_json(self, data: object) -> str:
        """orjson: the Studio's pages are thousands of fields. Lone surrogates (which orjson
        refuses) fall back to the standard library, which escapes them. Text, not bytes:
        WebSocket messages must leave as text frames (graphql-transport-ws)."""
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            return json.dumps(data, separators=(",", ":"))

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our GraphiQL 5 build, served from this host (Strawberry's page loads a CDN)."""
        return graphiql_page()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> StudioContext:
        context = StudioContext(
            request=request,
            response=response,
            services=self.services,
            trace_id=current_trace_id(),
            principal=getattr(request.state, PRINCIPAL_STATE, None),
        )
        if isinstance(request, Request):
            setattr(request.state, _CONTEXT_STATE, context)
        return context

    async def on_ws_connect(self, context: StudioContext) -> UnsetType | dict[str, object] | None:
        header = authorization_of(context.connection_params, context.request.headers)
        try:
            principal = await self.services.verifier.verify(bearer_token(header))
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"reason": exc.message}) from exc
        context.principal = principal
        expiry: SocketExpiry | None = getattr(context.request.state, EXPIRY_STATE, None)
        if expiry is not None:
            expiry.arm(principal.expires_at)
        return cast(UnsetType, UNSET)


# What a browser on an allowed origin may send and read (the Studio on another origin).
CORS_ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Idempotency-Key",
    "traceparent",
    "tracestate",
)
CORS_EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate")


def _cors(settings: Settings) -> list[Middleware]:
    """CORS for the HTTP API from ``STUDIO_ALLOWED_ORIGINS`` (the WebSocket origin check
    uses the same list). None configured: no CORS headers, same-origin only. Bearer tokens
    travel in ``Authorization``, never cookies, so credentials stay off."""
    if not settings.allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            allow_credentials=False,
            max_age=600,
        )
    ]


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    freeze_gc: bool = False,
    schema: Schema | None = None,
) -> Starlette:
    """``freeze_gc``: after start-up, move what exists into the collector's permanent
    generation (``gc.freeze``) and raise its young-generation threshold
    (``GC_YOUNG_THRESHOLD``) — for the serving process (``serve``), not for test suites
    that build many apps in one process; both are undone at shutdown. ``schema``: another
    build of the schema (the differential tests serve the reference executor with it)."""
    settings = settings or Settings()
    configure_tracing()  # before the engine and HTTP client are made: they get instrumented
    services = services or Services.build(settings)
    graphql_app = StudioGraphQL(
        services,
        schema=schema or default_schema,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        # graphql-transport-ws only: the legacy graphql-ws protocol had an auth bypass.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        allowed_origins=settings.allowed_origins,
        keep_alive=True,
        keep_alive_interval=settings.ws_keep_alive_seconds,
        max_subscriptions_per_connection=None,  # StudioTransportWSHandler applies the caps
    )
    # Authentication first (401 before anything else), then the body checks (size, media
    # type, JSON well-formed and shallow, no batches), then Strawberry.
    guarded = RequestGuard(
        graphql_app,
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
    )
    # Idempotency-Key after authentication (keys are scoped to tenant and subject).
    idempotent = IdempotencyGuard(
        guarded, services.db, graphql=True, max_body_bytes=settings.max_body_bytes
    )
    gateway = GraphQLGateway(idempotent, services.verifier, max_json_depth=settings.max_json_depth)
    # WebSockets skip the HTTP-only layers (body checks, Idempotency-Key): each layer is a
    # coroutine frame held for the life of every socket.
    socket_gateway = GraphQLGateway(
        graphql_app, services.verifier, max_json_depth=settings.max_json_depth
    )

    async def healthz(_request: Request) -> JSONResponse:
        """Liveness, and what this replica's prober has done (counts only: it is public)."""
        prober = services.health_prober
        workers = {
            "healthProber": {
                "running": prober is not None and prober.running,
                "probed": prober.probed if prober is not None else 0,
            }
        }
        return JSONResponse({"status": "ok", "workers": workers})

    async def readyz(_request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in (("database", services.db.ping), ("bus", services.bus.ping)):
            try:
                async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                    await probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
            headers=None if ready else {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await services.start()
        thresholds = gc.get_threshold()
        if freeze_gc:
            # Start-up's objects live as long as the process: keep them out of the cyclic
            # collector's generations (collections were ~20 % of a Studio page's time).
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
        try:
            yield
        finally:
            if freeze_gc:
                gc.set_threshold(*thresholds)
                gc.unfreeze()
            await recorder_of(app).drain()  # rejected inbound webhooks still being recorded
            # ``serve`` gives requests in flight 30 % of the grace period (uvicorn's
            # graceful timeout) before this runs: SIGTERM -> exit stays within the grace.
            await services.stop(settings.shutdown_grace_seconds * (1 - REQUEST_GRACE_SHARE))

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/graphql", gateway, methods=["GET", "POST"]),
            Route(ROTATE_PATH, route_app(services), methods=["POST"]),
            WebSocketRoute("/graphql", socket_gateway),
            # Providers authenticate by signature, not by bearer token (see ``inbound``).
            Route("/webhooks/inbound/{connection_id}", inbound_webhook, methods=["POST"]),
        ]
        + (
            [Route(METRICS_PATH, metrics_endpoint(services), methods=["GET"])]
            if settings.metrics_enabled
            else []
        )
        + web_routes()
        + (sandbox_routes() if settings.demo_sandbox else []),
        lifespan=lifespan,
        middleware=[
            # Outermost: every request gets its trace, a metric sample and a log line.
            Middleware(
                RequestTelemetry,
                principal_state=PRINCIPAL_STATE,
                tenant_labels=settings.metrics_tenant_labels,
            ),
            Middleware(HeaderSizeLimit, max_header_bytes=settings.max_header_bytes),
            *_cors(settings),
        ],
        # REST routes (the rotate alias, inbound webhooks) answer an outage like GraphQL does.
        exception_handlers={
            OperationalError: _outage,
            InterfaceError: _outage,
            SATimeoutError: _outage,
            RedisConnectionError: _outage,
            ConnectionError: _outage,
        },
    )
    app.state.services = services
    return app
