"""The typed context every resolver receives."""

from __future__ import annotations

import asyncio
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
from studio_integrations.core.context import ActionContext
from studio_integrations.core.errors import Unauthenticated
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
    _session: AsyncSession | None = field(default=None, repr=False)
    _session_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _session_writes: int = field(default=0, repr=False)

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
        """The request's read-only, tenant-scoped session: one per HTTP request (one pool
        checkout, one snapshot), taken in turns by resolvers and loaders (a session serves
        one statement at a time), closed by ``close()`` at the end of the request. WebSocket
        contexts live as long as the socket, so they read in short sessions instead. Never
        nest ``read()`` blocks, nor await a DataLoader inside one."""
        if isinstance(self.request, WebSocket):
            async with self.services.db.read_session(self.scope) as session:
                yield session
            return
        db = self.services.db
        async with self._session_lock:
            if self._session is not None and self._session_writes != db.writes:
                # Something was written since its snapshot began (this request's own
                # writes included, e.g. a second mutation): read in a fresh snapshot.
                await self._session.close()
                self._session = None
            if self._session is None:
                self._session_writes = db.writes
                self._session = db.read_session(self.scope)
            yield self._session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One tenant-scoped transaction for one governed action. The request's read
        session ends first, so what is read afterwards sees the write."""
        await self.close()
        async with self.services.db.transaction(self.scope) as session:
            yield session

    def for_event(self) -> StudioContext:
        """The context one subscription event executes with: this socket's, with loaders of
        its own (``subscriptions.execution``), so nothing is cached across events."""
        return replace(self, _loaders=None)

    async def end(self) -> None:
        """The request is answered (the view calls this): its read session ends, and its
        DataLoaders go, with every row they hold, freed by reference counting. Kept, they
        would wait for the cyclic collector: the context stays reachable from cycles after
        the request (the request's state, graphql-core's executor), and ~3,900 objects a
        Studio page left that way made garbage collection a fifth of the page's CPU."""
        await self.close()
        loaders, self._loaders = self._loaders, None
        if loaders is not None:
            loaders.close()

    async def close(self) -> None:
        """Ends the request's read session (``end``, and ``write`` before a transaction)."""
        async with self._session_lock:
            session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def loaders(self) -> Loaders:
        """DataLoaders for this HTTP request, or for one subscription event (``for_event``):
        a WebSocket's context lives as long as the socket."""
        if self._loaders is None:
            self._loaders = Loaders(self.services.db, self.scope, read=self.read)
        return self._loaders


Info = StrawberryInfo[StudioContext, None]
