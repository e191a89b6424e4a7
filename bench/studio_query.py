"""The Studio's Connections page query against a hand-written endpoint (DESIGN §11).

``integrationConnections(first: N)`` with provider, credential, health, the last 3 runs and
``viewerCan`` (45 fields a connection: 2,255 at N = 50) is served twice by the same process:
through the GraphQL stack, and by a hand-written Starlette endpoint that verifies the same
bearer token, reads the same rows with SQLAlchemy Core and answers with orjson. The two
answers are checked byte for byte before anything is timed.

- HTTP: the app runs under uvicorn in a child process (so the load generator does not share
  its event loop); 16 connections hammer one endpoint for a few seconds, then the other,
  interleaved, three rounds each; the ratio is GraphQL ÷ hand-written of the medians.
- In-process: the same two requests through ``httpx.ASGITransport``, sequential, median per
  call.
- SQL statements per request at page sizes 10, 50 and 100 (they must not grow).

Run on SQLite always and on PostgreSQL when it answers at ``BENCH_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``): ``python -m bench.studio_query``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import or_, select
from sqlalchemy.sql import func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from studio_integrations.app import create_app
from studio_integrations.auth.scopes import ACTION_SCOPES, ALL_SCOPES
from studio_integrations.auth.tokens import bearer_token, mint_dev_token
from studio_integrations.core.enums import ConnectionStatus
from studio_integrations.core.errors import Unauthenticated
from studio_integrations.persistence.db import BACKGROUND_KEY, Database
from studio_integrations.persistence.migrations import upgrade
from studio_integrations.persistence.models import (
    ConnectionHealth,
    Credential,
    IntegrationConnection,
    IntegrationRun,
    Provider,
)
from studio_integrations.persistence.repository import encode_cursor
from studio_integrations.services import Services
from studio_integrations.settings import Settings

TENANT = "acme"
SEEDED = 100
PAGE_SIZES = (10, 50, 100)
BENCH_PAGE = 50
CONCURRENCY = 16
ROUND_SECONDS = float(os.environ.get("BENCH_ROUND_SECONDS", "3"))
ROUNDS = 3
IN_PROCESS_CALLS = int(os.environ.get("BENCH_IN_PROCESS_CALLS", "30"))
# BENCH_HTTP=0 skips the HTTP part; BENCH_POSTGRES=0 the PostgreSQL back end.
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)

STUDIO_QUERY = """
query StudioConnections($first: Int!) {
  integrationConnections(first: $first) {
    nodes {
      id name status authMode projectId updatedAt
      provider { id key name category }
      credential { id keyVaultRef currentVersion expiresAt }
      health { status circuitState latencyP95Ms checkedAt }
      runs(first: 3) { nodes { id kind status httpStatus latencyMs startedAt } }
      viewerCan { test update retire }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

# The settings both processes use: workers quiet, rate limits out of the way.
SETTINGS: dict[str, Any] = {
    "probe_interval_seconds": 86_400,
    "rotation_scheduler_interval_seconds": 86_400,
    "tenant_expensive_queries_per_minute": 10**9,
    "token_expensive_queries_per_minute": 10**9,
    "log_level": "WARNING",
}


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def handwritten(services: Services) -> Route:
    """What a person would write for this one page: auth, five Core statements, orjson."""
    db = services.db
    read_scopes = ACTION_SCOPES

    async def endpoint(request: Request) -> Response:
        try:
            principal = await services.verifier.verify(
                bearer_token(request.headers.get("authorization"))
            )
        except Unauthenticated:
            return Response(status_code=401)
        first = int(request.query_params.get("first", "50"))
        tid = principal.tenant_id
        c, p, k = IntegrationConnection, Provider, Credential
        h, r = ConnectionHealth, IntegrationRun
        async with db.engine.connect() as conn:
            conn.info[BACKGROUND_KEY] = False  # a request's statements (see count_statements)
            rows = (
                await conn.execute(
                    select(
                        c.id,
                        c.name,
                        c.status,
                        c.auth_mode,
                        c.project_id,
                        c.updated_at,
                        c.provider_id,
                        c.credential_id,
                    )
                    .where(c.tenant_id == tid)
                    .order_by(c.id.desc())
                    .limit(first + 1)
                )
            ).all()
            has_next, rows = len(rows) > first, rows[:first]
            ids = [row.id for row in rows]
            providers = {
                row.id: row
                for row in await conn.execute(
                    select(p.id, p.key, p.name, p.category).where(
                        p.id.in_({row.provider_id for row in rows}),
                        or_(p.tenant_id == tid, p.tenant_id.is_(None)),
                    )
                )
            }
            credentials = {
                row.id: row
                for row in await conn.execute(
                    select(k.id, k.key_vault_ref, k.current_version, k.expires_at).where(
                        k.id.in_({row.credential_id for row in rows if row.credential_id}),
                        k.tenant_id == tid,
                    )
                )
            }
            health = {
                row.connection_id: row
                for row in await conn.execute(
                    select(
                        h.connection_id, h.status, h.circuit_state, h.latency_p95_ms, h.checked_at
                    ).where(h.connection_id.in_(ids), h.tenant_id == tid)
                )
            }
            ranked = (
                select(
                    r.id,
                    r.connection_id,
                    r.kind,
                    r.status,
                    r.http_status,
                    r.latency_ms,
                    r.started_at,
                    func.row_number()
                    .over(partition_by=r.connection_id, order_by=r.id.desc())
                    .label("rank"),
                )
                .where(r.connection_id.in_(ids), r.tenant_id == tid)
                .subquery()
            )
            runs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            for run in await conn.execute(
                select(ranked).where(ranked.c.rank <= 3).order_by(ranked.c.id.desc())
            ):
                runs[run.connection_id].append(
                    {
                        "id": run.id,
                        "kind": run.kind.value,
                        "status": run.status.value,
                        "httpStatus": run.http_status,
                        "latencyMs": run.latency_ms,
                        "startedAt": _iso(run.started_at),
                    }
                )
        can = {name: principal.has(read_scopes[name]) for name in ("testConnection",)}
        can_update = principal.has(read_scopes["updateConnection"])
        can_retire = principal.has(read_scopes["retireConnection"])
        nodes = []
        for row in rows:
            prov = providers[row.provider_id]
            cred = credentials.get(row.credential_id) if row.credential_id else None
            hl = health.get(row.id)
            live = row.status is not ConnectionStatus.RETIRED
            nodes.append(
                {
                    "id": row.id,
                    "name": row.name,
                    "status": row.status.value,
                    "authMode": row.auth_mode.value,
                    "projectId": row.project_id,
                    "updatedAt": _iso(row.updated_at),
                    "provider": {
                        "id": prov.id,
                        "key": prov.key,
                        "name": prov.name,
                        "category": prov.category,
                    },
                    "credential": None
                    if cred is None
                    else {
                        "id": cred.id,
                        "keyVaultRef": cred.key_vault_ref,
                        "currentVersion": cred.current_version,
                        "expiresAt": _iso(cred.expires_at),
                    },
                    "health": None
                    if hl is None or hl.checked_at is None
                    else {
                        "status": hl.status.value,
                        "circuitState": hl.circuit_state.value,
                        "latencyP95Ms": hl.latency_p95_ms,
                        "checkedAt": _iso(hl.checked_at),
                    },
                    "runs": {"nodes": runs[row.id]},
                    "viewerCan": {
                        "test": live and can["testConnection"],
                        "update": live and can_update,
                        "retire": live and can_retire,
                    },
                }
            )
        body = {
            "data": {
                "integrationConnections": {
                    "nodes": nodes,
                    "pageInfo": {
                        "hasNextPage": has_next,
                        "endCursor": encode_cursor(rows[-1].id) if rows else None,
                    },
                }
            }
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return Route("/handwritten", endpoint, methods=["GET"])


def bench_app(url: str, state_dir: Path) -> tuple[Starlette, Settings]:
    settings = Settings(database_url=url, state_dir=state_dir, **SETTINGS)
    try:
        app = create_app(settings, freeze_gc=True)
    except TypeError:  # a build before freeze_gc (comparing against main: PYTHONPATH)
        app = create_app(settings)
    app.router.routes.append(handwritten(app.state.services))
    return app, settings


@contextlib.asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Services]:
    """The app's lifespan without a server (for in-process calls), health prober stopped."""
    services: Services = app.state.services
    async with app.router.lifespan_context(app):
        if services.health_prober is not None:
            await services.health_prober.stop()
        yield services


@dataclass
class Requests:
    token: str

    def graphql(self, first: int) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": "/graphql",
            "json": {"query": STUDIO_QUERY, "variables": {"first": first}},
            "headers": {"Authorization": f"Bearer {self.token}"},
        }

    def handwritten(self, first: int) -> dict[str, Any]:
        return {
            "method": "GET",
            "url": f"/handwritten?first={first}",
            "headers": {"Authorization": f"Bearer {self.token}"},
        }


async def _call(client: httpx.AsyncClient, request: dict[str, Any]) -> bytes:
    response = await client.request(**request)
    response.raise_for_status()
    return response.content


async def check_identical(client: httpx.AsyncClient, requests: Requests, first: int) -> int:
    gql = await _call(client, requests.graphql(first))
    hand = await _call(client, requests.handwritten(first))
    if gql != hand:
        raise SystemExit(f"answers differ at first={first}:\n{gql[:600]!r}\n{hand[:600]!r}")
    return _count_fields(orjson.loads(gql)["data"])


def _count_fields(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + _count_fields(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_fields(v) for v in value)
    return 0


async def throughput(client: httpx.AsyncClient, request: dict[str, Any], seconds: float) -> float:
    """Requests per second over ``seconds`` with ``CONCURRENCY`` requests in flight."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await _call(client, request)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - start)


async def serve_forever(url: str, state_dir: str) -> None:
    """Child process: the app under uvicorn on a free port; prints the port, runs until
    stdin closes."""
    from tests.support.live import serve

    app, _ = bench_app(url, Path(state_dir))
    async with serve(app, log_level="error") as live:
        if live.services.health_prober is not None:
            await live.services.health_prober.stop()
        print(live.port, flush=True)
        await asyncio.to_thread(sys.stdin.read)


@contextlib.asynccontextmanager
async def child_server(url: str, state_dir: Path) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.studio_query",
        "--serve",
        url,
        str(state_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            raise SystemExit("the bench server did not start")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def seeded(url: str) -> None:
    from tests.connections.test_batching import seed

    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    try:
        await seed(db, TENANT, SEEDED)
    finally:
        await db.dispose()


async def bench_backend(name: str, url: str, state_dir: Path) -> dict[str, float]:
    await seeded(url)
    app, settings = bench_app(url, state_dir)
    token = mint_dev_token(settings, tenant=TENANT, subject="alice", scopes=ALL_SCOPES)
    requests = Requests(token)
    results: dict[str, float] = {}
    async with (
        running(app) as services,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client,
    ):
        for first in PAGE_SIZES:
            fields = await check_identical(client, requests, first)
            counts = []
            for request in (requests.graphql(first), requests.handwritten(first)):
                with services.db.count_statements() as counter:
                    await _call(client, request)
                counts.append(counter.count)
            print(
                f"  {name:10} first={first:<3}  identical JSON, {fields:5} fields   "
                f"SQL statements: GraphQL {counts[0]}, hand-written {counts[1]}"
            )
        # Wall time per call, and CPU time per call (process_time: every thread of this
        # process), which a shared machine disturbs far less.
        samples: dict[str, list[float]] = {"graphql": [], "handwritten": []}
        cpu: dict[str, list[float]] = {"graphql": [], "handwritten": []}
        for _ in range(ROUNDS):
            for kind in samples:
                request = getattr(requests, kind)(BENCH_PAGE)
                per_call, per_call_cpu = [], []
                for _ in range(IN_PROCESS_CALLS):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    await _call(client, request)
                    per_call.append(time.perf_counter() - start)
                    per_call_cpu.append(time.process_time() - start_cpu)
                samples[kind].append(statistics.median(per_call))
                cpu[kind].append(statistics.median(per_call_cpu))
        gql, hand = (statistics.median(samples[k]) for k in ("graphql", "handwritten"))
        gql_cpu, hand_cpu = (statistics.median(cpu[k]) for k in ("graphql", "handwritten"))
        results["in-process"] = hand / gql
        results["in-process cpu"] = hand_cpu / gql_cpu
        print(
            f"  {name:10} in-process  first={BENCH_PAGE}: GraphQL {gql * 1e3:6.1f} ms, "
            f"hand-written {hand * 1e3:6.1f} ms a call  ->  {hand / gql:.2f}x;  CPU "
            f"{gql_cpu * 1e3:6.1f} vs {hand_cpu * 1e3:6.1f} ms  ->  {hand_cpu / gql_cpu:.2f}x"
        )
    if os.environ.get("BENCH_HTTP", "1") == "0":
        return results
    async with (
        child_server(url, state_dir) as base,
        httpx.AsyncClient(
            base_url=base, limits=httpx.Limits(max_connections=CONCURRENCY), timeout=60
        ) as client,
    ):
        await check_identical(client, requests, BENCH_PAGE)
        rates: dict[str, list[float]] = {"graphql": [], "handwritten": []}
        for _ in range(ROUNDS):
            for kind in rates:
                request = getattr(requests, kind)(BENCH_PAGE)
                rates[kind].append(await throughput(client, request, ROUND_SECONDS))
        gql, hand = (statistics.median(rates[k]) for k in ("graphql", "handwritten"))
        results["http"] = gql / hand
        pairs = ", ".join(f"{g:.0f}/{h:.0f}" for g, h in zip(*rates.values(), strict=True))
        print(
            f"  {name:10} HTTP {CONCURRENCY} conns first={BENCH_PAGE}: GraphQL {gql:6.1f} req/s, "
            f"hand-written {hand:6.1f} req/s  ->  {gql / hand:.2f}x  "
            f"(rounds {pairs})"
        )
    return results


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str | None]:
    import asyncpg

    admin_dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"bench_studio_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        yield None
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main() -> None:
    print(
        f"Studio list query: GraphQL ÷ hand-written (same process, identical JSON; "
        f"budget >= 0.5x)  [{ROUNDS} interleaved rounds of {ROUND_SECONDS:g} s]"
    )
    with tempfile.TemporaryDirectory() as tmp:
        await bench_backend("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", Path(tmp))
        if os.environ.get("BENCH_POSTGRES", "1") == "0":
            return
        async with postgres_database() as url:
            if url is None:
                print("  postgresql  not reachable: skipped")
            else:
                await bench_backend("postgresql", url, Path(tmp))


def _package(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1].lstrip("/")
            if marker == "lib/python3":
                tail = tail.split("/", 1)[1] if "/" in tail else tail
                return "stdlib:" + tail.split("/", 1)[0].removesuffix(".py")
            return tail.split("/", 1)[0].removesuffix(".py")
    return "builtins" if filename.startswith("~") else filename


async def profile(backend: str = "sqlite", calls: int = 20) -> None:
    """cProfile of in-process GraphQL calls on SQLite or PostgreSQL, self time grouped by
    package (CPU time: the database server's own work is not counted)."""
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url: str | None = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        if backend == "postgres":
            url = await stack.enter_async_context(postgres_database())
            if url is None:
                raise SystemExit("PostgreSQL is not reachable at BENCH_POSTGRES_URL")
        assert url is not None
        await _profile(url, Path(tmp), calls)


async def _profile(url: str, tmp: Path, calls: int) -> None:
    import cProfile
    import pstats
    from collections import Counter

    await seeded(url)
    app, settings = bench_app(url, tmp)
    token = mint_dev_token(settings, tenant=TENANT, subject="alice", scopes=ALL_SCOPES)
    request = Requests(token).graphql(BENCH_PAGE)
    async with (
        running(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client,
    ):
        await _call(client, request)
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(calls):
            await _call(client, request)
        profiler.disable()
    stats = pstats.Stats(profiler)
    by_package: Counter[str] = Counter()
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += tottime
    total = sum(by_package.values())
    for package, seconds in by_package.most_common(15):
        print(f"  {package:28} {seconds / total:6.1%}")
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(serve_forever(sys.argv[2], sys.argv[3]))
    elif sys.argv[1:2] == ["--profile"]:
        asyncio.run(profile(*sys.argv[2:3]))
    else:
        asyncio.run(main())
