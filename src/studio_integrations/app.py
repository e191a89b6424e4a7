"""create_app(settings) -> Starlette. The lifespan starts the database, bus and workers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from studio_integrations.auth.gateway import (
    EXPIRY_STATE,
    PRINCIPAL_STATE,
    GraphQLGateway,
    SocketExpiry,
)
from studio_integrations.auth.limits import RequestGuard, graphql_error_response
from studio_integrations.auth.tokens import bearer_token
from studio_integrations.errors import Unauthenticated
from studio_integrations.events.trace import trace_id_from
from studio_integrations.inbound import inbound_webhook
from studio_integrations.rest.rotation import ROTATE_PATH, route_app
from studio_integrations.sandbox import sandbox_routes
from studio_integrations.schema.context import StudioContext
from studio_integrations.schema.limits import StudioTransportWSHandler
from studio_integrations.schema.schema import schema as default_schema
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from studio_integrations.web import graphiql_page, web_routes

log = logging.getLogger(__name__)


_HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


class StudioGraphQL(GraphQL[StudioContext, None]):
    # Caps live operations per socket and per tenant (TOO_MANY_SUBSCRIPTIONS).
    graphql_transport_ws_handler_class = StudioTransportWSHandler

    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As Strawberry's, but its HTTP refusals (unknown operation name, missing query, …)
        leave as GraphQL-shaped JSON with an ``extensions.code`` instead of plain text."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response: Response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            code = _HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
            response = graphql_error_response(exc.status_code, code, exc.reason)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our GraphiQL 5 build, served from this host (Strawberry's page loads a CDN)."""
        return graphiql_page()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> StudioContext:
        return StudioContext(
            request=request,
            response=response,
            services=self.services,
            trace_id=trace_id_from(request.headers.get("traceparent")),
            principal=getattr(request.state, PRINCIPAL_STATE, None),
        )

    async def on_ws_connect(self, context: StudioContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        if not isinstance(header, str):
            header = context.request.headers.get("authorization")
        try:
            principal = await self.services.verifier.verify(bearer_token(header))
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"reason": exc.message}) from exc
        context.principal = principal
        expiry: SocketExpiry | None = getattr(context.request.state, EXPIRY_STATE, None)
        if expiry is not None:
            expiry.arm(principal.expires_at)
        return cast(UnsetType, UNSET)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Starlette:
    settings = settings or Settings()
    services = services or Services.build(settings)
    graphql_app = StudioGraphQL(
        services,
        schema=default_schema,
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
    gateway = GraphQLGateway(guarded, services.verifier)

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
                await probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/graphql", gateway, methods=["GET", "POST"]),
            Route(ROTATE_PATH, route_app(services), methods=["POST"]),
            WebSocketRoute("/graphql", gateway),
            # Providers authenticate by signature, not by bearer token (see ``inbound``).
            Route("/webhooks/inbound/{connection_id}", inbound_webhook, methods=["POST"]),
            *web_routes(),
            *(sandbox_routes() if settings.demo_sandbox else []),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
