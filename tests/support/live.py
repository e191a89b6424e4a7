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


class _Server(uvicorn.Server):
    """uvicorn's server, minus two fixed waits that a suite starting ~800 servers paid each
    time (~2 minutes of its test time): its main loop looks at ``should_exit`` every 0.1 s,
    and its shutdown waits 0.1 s for open connections to finish even when there are none.
    Here the loop wakes as soon as ``stop()`` is called (it still ticks every 0.1 s, for the
    Date header and uvicorn's own exit checks), and the shutdown waits only for connections
    that exist; otherwise it is uvicorn's (``Server.shutdown``, uvicorn 0.30+)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopped.set()

    async def main_loop(self) -> None:
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                await asyncio.wait([stopped], timeout=0.1)  # never swallows a cancellation
                should_exit = await self.on_tick(counter)
        finally:
            stopped.cancel()

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        connections = list(self.server_state.connections)
        for connection in connections:
            connection.shutdown()
        if connections:
            await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(
                self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown
            )
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


@contextlib.asynccontextmanager
async def serve(
    app: Starlette, host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` on a free port of ``host``; ``options`` go to ``uvicorn.Config``."""
    settings: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "ws": "websockets-sansio"}
    settings.update(options)
    config = uvicorn.Config(app, host=host, port=0, **settings)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(app=app, host=host, port=port)
    finally:
        server.stop()
        await asyncio.wait_for(task, timeout=10)
