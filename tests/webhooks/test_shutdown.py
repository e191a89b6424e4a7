"""Services.stop has a deadline: a worker loop that swallows its cancellation (what
``asyncio.wait_for`` can do on 3.11) is cancelled again and does not keep the process up."""

from __future__ import annotations

import asyncio

from studio_integrations.services import Services


async def test_a_relay_that_swallows_its_cancellation_does_not_hang_the_stop(
    services: Services,
) -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # back in its loop, still "claiming"

    relay_task = services.relay._task
    assert relay_task is not None
    relay_task.cancel()
    await asyncio.wait([relay_task])
    services.relay._task = asyncio.create_task(stubborn())
    stop = asyncio.create_task(services.stop(grace=0.5))
    done, _ = await asyncio.wait([stop], timeout=60)  # a hang detector, not a timing
    assert stop in done, "Services.stop hung on the relay"
    assert swallowed.is_set()
    assert services.relay._task.done()
    dispatcher_task = services.webhook_dispatcher._task
    assert dispatcher_task is None or dispatcher_task.done()
