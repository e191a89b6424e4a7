"""A programmable webhook receiver: a real HTTP(S) server (uvicorn + Starlette) on loopback.

- ``answer(*replies)`` programs the answers: each request takes the next ``Reply`` (status,
  body, headers, delay); the last one repeats. Default: 200.
- ``hold()`` makes requests wait until ``release()`` (a receiver that is slow to answer,
  for killing a dispatcher mid-delivery).
- Every request is recorded in ``received`` (headers with lower-case names, raw body) and
  can be awaited with ``next_request()`` / ``wait_for(n)``.
- ``running()`` serves over HTTP; ``running(tls=…)`` over HTTPS with a ``trustme`` cert.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.tls import TlsFiles, serve_https
from tests.support.live import serve


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._replies: list[Reply] = [Reply()]
        self._served = 0
        self._arrived = asyncio.Condition()
        self._gate = asyncio.Event()
        self._gate.set()
        self.base_url = ""
        self.app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["POST", "GET", "PUT"])]
        )

    def answer(self, *replies: Reply) -> None:
        self._replies = list(replies) or [Reply()]
        self._served = 0

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        seen = Received(
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        async with self._arrived:
            self.received.append(seen)
            self._arrived.notify_all()
        await self._gate.wait()
        reply = self._replies[min(self._served, len(self._replies) - 1)]
        self._served += 1
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    @contextlib.asynccontextmanager
    async def running(self, tls: TlsFiles | None = None) -> AsyncIterator[WebhookReceiver]:
        if tls is not None:
            async with serve_https(self.app, tls) as port:
                self.base_url = f"https://127.0.0.1:{port}"
                yield self
            return
        async with serve(self.app, lifespan="off") as live:
            self.base_url = live.url
            try:
                yield self
            finally:
                self.release()
