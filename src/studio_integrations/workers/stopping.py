"""How a worker's task is stopped: waited for, and cancelled only at the deadline."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def finish(task: asyncio.Task[Any], seconds: float) -> None:
    """Wait for ``task`` at most ``seconds``, then cancel it and wait briefly; never
    raises the task's error or cancellation, and never absorbs the caller's. Never waits
    with ``asyncio.wait_for`` (it can swallow a cancellation on 3.11, NOTES.md)."""
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error", task.get_name(), exc_info=task.exception())
