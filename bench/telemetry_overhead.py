"""What observability costs a request, as ratios to the same app without it (same run).

In process (httpx's ASGI transport, no sockets), SQLite, `{ viewer { subject } }` and an
`auditEvents(first: 20)` page. Variants: without the request telemetry (middleware and
operation extension removed), with it and tracing off (the default), and with tracing on
(an in-memory exporter). Batches of the variants alternate; medians of per-request times.

    PYTHONPATH=src:. python -m bench.telemetry_overhead
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from studio_integrations.app import create_app
from studio_integrations.auth.scopes import ALL_SCOPES
from studio_integrations.auth.tokens import mint_dev_token
from studio_integrations.persistence.migrations import upgrade
from studio_integrations.schema.observability import OperationTelemetry
from studio_integrations.settings import Settings
from studio_integrations.telemetry.asgi import RequestTelemetry
from studio_integrations.telemetry.tracing import install_tracer_provider, studio_sampler

BATCH = 50
ROUNDS = 8
QUERIES = {
    "viewer": "{ viewer { subject } }",
    "audit page": "{ auditEvents(first: 20) { nodes { id type traceId } } }",
}


@contextmanager
def without_operation_spans() -> Iterator[None]:
    original = OperationTelemetry.on_operation

    def passthrough(self: OperationTelemetry) -> Iterator[None]:
        yield

    OperationTelemetry.on_operation = passthrough  # type: ignore[method-assign]
    try:
        yield
    finally:
        OperationTelemetry.on_operation = original  # type: ignore[method-assign]


def build(settings: Settings, *, telemetry: bool) -> Starlette:
    app = create_app(settings)
    if not telemetry:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestTelemetry]
    return app


async def batch(client: httpx.AsyncClient, query: str, token: str) -> list[float]:
    samples = []
    for _ in range(BATCH):
        start = time.perf_counter()
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    return samples


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            database_url=url,
            state_dir=Path(tmp) / "state",
            dev_signing_key="bench-key-0123456789abcdef0123456789abcdef",
            master_key="bench-master",
            tenant_mutations_per_minute=0,
            token_mutations_per_minute=0,
            tenant_expensive_queries_per_minute=0,
            token_expensive_queries_per_minute=0,
        )
        token = mint_dev_token(settings, tenant="t1", subject="bench", scopes=ALL_SCOPES)
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=studio_sampler())
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        apps = {"no telemetry": build(settings, telemetry=False)}
        apps["telemetry, tracing off"] = build(settings, telemetry=True)
        install_tracer_provider(provider)
        apps["telemetry, tracing on"] = build(settings, telemetry=True)
        install_tracer_provider(None)
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
            for name, app in apps.items()
        }
        for app in apps.values():
            await app.state.services.start()
        try:
            for label, query in QUERIES.items():
                times: dict[str, list[float]] = {name: [] for name in apps}
                for client in clients.values():  # warm-up
                    await batch(client, query, token)
                for _ in range(ROUNDS):
                    for name, client in clients.items():
                        if name == "no telemetry":
                            with without_operation_spans():
                                times[name] += await batch(client, query, token)
                        else:
                            if name.endswith("tracing on"):
                                install_tracer_provider(provider)
                            times[name] += await batch(client, query, token)
                            install_tracer_provider(None)
                            exporter.clear()
                base = statistics.median(times["no telemetry"])
                print(f"{label}:")
                for name, samples in times.items():
                    ratio = statistics.median(samples) / base
                    print(f"  {name:24s} {ratio:5.2f}x the median request time without")
        finally:
            for app in apps.values():
                await app.state.services.stop()
            for client in clients.values():
                await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
