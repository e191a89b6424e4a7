"""GraphQL request overhead, event fan-out latency and the Studio list query (see
``bench/studio_query.py``), as ratios to same-run baselines.

- viewer: `{ viewer { subject } }` over HTTP (auth + Strawberry) vs a bare Starlette JSON
  endpoint on the same server: the cost the GraphQL stack adds per request.
- audit page: `auditEvents(first: 50)` vs the viewer query: the cost of one database page.
- fan-out: emit -> outbox -> bus -> subscriber, median latency (absolute; its baseline is the
  relay poll interval it is woken before).

``--fanout`` runs ``bench.fanout`` instead (live fan-out vs a raw WebSocket broadcast,
``--subscribers N``, ``--soak MINUTES``); ``--dispatcher`` ``bench.dispatcher``;
``--shutdown`` ``bench.shutdown`` (SIGTERM under load on two replicas, ``--lag``,
``--feedback``).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.support.events import emit
from tests.support.live import serve

from bench import studio_query
from studio_integrations.app import create_app
from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.auth.tokens import mint_dev_token
from studio_integrations.persistence.migrations import upgrade
from studio_integrations.settings import Settings

ROUNDS = 400


async def _time(client: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> float:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    return statistics.median(samples)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        url = f"sqlite+aiosqlite:///{db}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, state_dir=Path(tmp), outbox_poll_seconds=1.0)
        app = create_app(settings)

        async def baseline(_request: object) -> JSONResponse:
            return JSONResponse({"data": {"viewer": {"subject": "alice"}}})

        app.router.routes.append(Route("/baseline", baseline, methods=["POST"]))
        token = mint_dev_token(settings, tenant="acme", subject="alice", scopes=ALL_SCOPES)
        headers = {"Authorization": f"Bearer {token}"}
        async with serve(app) as live, httpx.AsyncClient(base_url=live.url) as client:
            for i in range(50):
                await emit(live.services, "acme", subject_id=f"prov_{i}")
            base = await _time(client, "POST", "/baseline", json={})
            viewer = await _time(
                client,
                "POST",
                "/graphql",
                json={"query": "{ viewer { subject } }"},
                headers=headers,
            )
            page = await _time(
                client,
                "POST",
                "/graphql",
                json={"query": "{ auditEvents(first: 50) { edges { node { id type traceId } } } }"},
                headers=headers,
            )
            latencies = []
            async with live.services.bus.subscribe("acme") as events:
                await asyncio.sleep(0.05)
                for _ in range(50):
                    start = time.perf_counter()
                    await emit(live.services, "acme")
                    await asyncio.wait_for(anext(events), 5)
                    latencies.append(time.perf_counter() - start)
        print(f"baseline JSON endpoint     median {base * 1e3:7.2f} ms  (1.00x)")
        print(
            f"viewer query               median {viewer * 1e3:7.2f} ms  ({viewer / base:.2f}x base)"
        )
        print(
            f"auditEvents(first: 50)     median {page * 1e3:7.2f} ms  ({page / viewer:.2f}x viewer)"
        )
        fan = statistics.median(latencies)
        print(
            f"emit -> subscriber         median {fan * 1e3:7.2f} ms  "
            f"({fan / settings.outbox_poll_seconds:.3f}x the relay poll interval)"
        )


if __name__ == "__main__":
    if "--fanout" in sys.argv:
        from bench import fanout

        fanout.main([a for a in sys.argv[1:] if a != "--fanout"])
    elif "--dispatcher" in sys.argv[1:]:
        from bench import dispatcher

        dispatcher.main([a for a in sys.argv[1:] if a != "--dispatcher"])
    elif "--shutdown" in sys.argv[1:]:
        from bench import shutdown

        shutdown.main([a for a in sys.argv[1:] if a != "--shutdown"])
    else:
        asyncio.run(main())
        asyncio.run(studio_query.main())
