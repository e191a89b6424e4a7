"""A dispatcher in its own process (``python -m tests.webhooks.worker_process``), for the
test that kills one mid-delivery. Settings come from STUDIO_* environment variables; it makes
one pass (claims and starts delivering) and prints CLAIMED <n> once its claims committed."""

from __future__ import annotations

import asyncio
import sys

from studio_integrations.persistence.db import Database
from studio_integrations.services import outbound_client
from studio_integrations.settings import Settings
from studio_integrations.vault.factory import make_secret_store
from studio_integrations.workers.webhook_dispatcher import WebhookDispatcher


async def main() -> None:
    settings = Settings()
    db = Database(settings.database_url)
    dispatcher = WebhookDispatcher(
        db,
        make_secret_store(settings, db),
        outbound_client(),
        allow_loopback=settings.allow_loopback_targets,
        retry_schedule=settings.webhook_retry_schedule,
        disable_after_seconds=settings.webhook_disable_after_seconds,
        lease_seconds=settings.webhook_lease_seconds,
    )
    claims = await dispatcher.claim()
    print(f"CLAIMED {len(claims)}", flush=True)
    await asyncio.gather(*(dispatcher.deliver(c) for c in claims))
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
