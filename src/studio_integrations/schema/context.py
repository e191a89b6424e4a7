"""The typed context every resolver receives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from studio_integrations.auth.principal import Principal
from studio_integrations.domain.context import ActionContext
from studio_integrations.errors import Unauthenticated
from studio_integrations.persistence.db import TenantScope
from studio_integrations.resolvers.loaders import Loaders
from studio_integrations.services import Services


@dataclass
class StudioContext:
    request: Request | WebSocket
    response: Response | WebSocket | None
    services: Services
    trace_id: str
    principal: Principal | None = None
    # Set by Strawberry from the graphql-transport-ws ``connection_init`` payload.
    connection_params: dict[str, Any] | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("authentication required")
        return self.principal

    @property
    def scope(self) -> TenantScope:
        return TenantScope.of(self.require_principal().tenant_id)

    def action_context(self) -> ActionContext:
        return self.require_principal().action_context(self.trace_id)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A short tenant-scoped session for one resolver (sessions are not shared across
        concurrently running resolvers)."""
        async with self.services.db.session(self.scope) as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One tenant-scoped transaction for one governed action."""
        async with self.services.db.transaction(self.scope) as session:
            yield session

    def for_event(self) -> StudioContext:
        """The context one subscription event executes with: this socket's, with loaders of
        its own (``subscriptions.execution``), so nothing is cached across events."""
        return replace(self, _loaders=None)

    @property
    def loaders(self) -> Loaders:
        """DataLoaders for this HTTP request, or for one subscription event (``for_event``):
        a WebSocket's context lives as long as the socket."""
        if self._loaders is None:
            self._loaders = Loaders(self.services.db, self.scope)
        return self._loaders


Info = StrawberryInfo[StudioContext, None]
