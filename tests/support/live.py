"""A real uvicorn server on a free loopback port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from studio_integrations.services import Services


@dataclass
class LiveServer:
    app: Starlette
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/graphql"

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


@contextlib.asynccontextmanager
async def serve(
    app: Starlette, host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` on a free port of ``host``; ``options`` go to ``uvicorn.Config``."""
    settings: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "ws": "websockets-sansio"}
    settings.update(options)
    config = uvicorn.Config(app, host=host, port=0, **settings)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(app=app, host=host, port=port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
