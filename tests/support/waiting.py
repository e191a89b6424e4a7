"""Waiting for server-side state that has no event to await."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], what: str, *, limit: float = 60.0) -> None:
    """Poll ``condition`` every 10 ms until it holds. ``limit`` only ends a hang (a busy
    machine can take seconds); it is not an assertion about time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
