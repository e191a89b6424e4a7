"""Differential tests of ``schema.execution`` (plain leaves read without graphql-core's
per-field machinery): for documents drawn from the live schema and for the Studio's own
operations, the fast schema's answers — data, errors, messages, paths, codes, HTTP status —
are byte-identical to the reference build's (graphql-core throughout), for callers with every
scope, with partial scopes (guarded fields null with FORBIDDEN), and for ids of another
tenant. Also: the validation cache is hit for a repeated document."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import strawberry
from bench.studio_query import STUDIO_QUERY
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from strawberry.extensions.validation_cache import _get_validate_cache

from studio_integrations.app import create_app
from studio_integrations.persistence.models import IntegrationConnection, IntegrationRun
from studio_integrations.schema.execution import StudioExecutionContext
from studio_integrations.schema.extensions import CACHE_SIZE
from studio_integrations.schema.schema import build_schema
from studio_integrations.schema.schema import schema as studio_schema
from tests.conftest import TokenFactory
from tests.connections.conftest import CONNECTIONS, NODE
from tests.connections.test_batching import LIST, seed
from tests.governance.test_hostile_input import (
    SCHEMA,
    DocumentBuilder,
    ThreadedServer,
    examples,
)
from tests.support.backends import Backend

SCOPES = [
    "all",
    "connections:read",
    "connections:read providers:read",
    "credentials:read health:read",
    "webhooks:read audit:read",
]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
COMPARED: list[str] = []


@dataclass
class Pair:
    server: ThreadedServer
    reference: Starlette
    tokens: dict[str, str]
    own_ids: list[str]
    foreign_ids: list[str]

    def ask(self, query: str, scopes: str, variables: dict[str, Any] | None = None) -> None:
        """The same request to both builds; their answers must be identical."""
        fast, reference = self.server.run(self._both(query, self.tokens[scopes], variables))
        assert fast == reference, query
        COMPARED.append(query)

    async def _both(
        self, query: str, token: str, variables: dict[str, Any] | None
    ) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        answers = []
        for app in (self.server.live.app, self.reference):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/graphql",
                    json={"query": query, "variables": variables or {}},
                    headers={"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT},
                )
            answers.append((response.status_code, response.content))
        return answers[0], answers[1]


async def _ids(pair_server: ThreadedServer, tenant: str) -> list[str]:
    from sqlalchemy import select

    from studio_integrations.persistence.db import TenantScope

    db = pair_server.live.services.db
    async with db.read_session(TenantScope.of(tenant)) as session:
        connections = (await session.execute(select(IntegrationConnection))).scalars().all()
        runs = (await session.execute(select(IntegrationRun).limit(3))).scalars().all()
    return [
        *(c.id for c in connections),
        *(c.provider_id for c in connections[:1]),
        *(c.credential_id for c in connections[:1] if c.credential_id),
        *(r.id for r in runs),
    ]


@pytest.fixture
def pair(backend: Backend, tmp_path: Path, make_token: TokenFactory) -> Iterator[Pair]:
    overrides = {
        "tenant_expensive_queries_per_minute": 0,
        "token_expensive_queries_per_minute": 0,
    }
    server = ThreadedServer(overrides, backend, tmp_path)
    try:
        services = server.live.services
        server.run(_stop_prober(server))
        server.run(seed(services.db, "acme", 4))
        server.run(seed(services.db, "globex", 2))
        reference = create_app(
            server.settings, services=services, schema=build_schema(fast_leaves=False)
        )
        yield Pair(
            server=server,
            reference=reference,
            tokens={scopes: make_token(scopes=scopes) for scopes in SCOPES},
            own_ids=server.run(_ids(server, "acme")),
            foreign_ids=server.run(_ids(server, "globex")),
        )
    finally:
        server.close()


async def _stop_prober(server: ThreadedServer) -> None:
    prober = server.live.services.health_prober
    if prober is not None:
        await prober.stop()


def test_the_studio_operations_answer_identically(pair: Pair) -> None:
    for scopes in SCOPES:
        pair.ask(STUDIO_QUERY, scopes, {"first": 3})
        pair.ask(LIST, scopes)
        pair.ask(CONNECTIONS, scopes, {"first": 2})
        for id_ in (*pair.own_ids, *pair.foreign_ids):
            pair.ask(NODE, scopes, {"id": id_})


@examples(120)
@given(data=st.data())
def test_documents_from_the_schema_answer_identically(pair: Pair, data: st.DataObject) -> None:
    ids = SimpleNamespace(seeded_ids=pair.own_ids + pair.foreign_ids)
    builder = DocumentBuilder(data, ids)  # type: ignore[arg-type]
    assert SCHEMA.query_type is not None
    query = "query " + builder.selection(SCHEMA.query_type, 1)
    pair.ask(query, data.draw(st.sampled_from(SCOPES)))


def test_the_differential_suite_compared_documents() -> None:
    """Runs last in this module: how many requests the two builds answered identically."""
    print(f"\nfast vs reference execution: {len(COMPARED)} documents compared")
    if COMPARED:
        assert len(set(COMPARED)) > 10


def test_a_repeated_document_is_validated_once() -> None:
    cache = _get_validate_cache(CACHE_SIZE)
    query = "{ __typename alias: __typename }"
    asyncio.run(studio_schema.execute(query))
    before = cache.cache_info().hits
    asyncio.run(studio_schema.execute(query))
    assert cache.cache_info().hits == before + 1


@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.type
class Odd:
    """Leaves off the happy path: a null for a non-null field, values the enum and the
    scalar refuse, and an awaitable attribute."""

    missing: str
    colour: Colour
    count: int
    fine: str | None


@strawberry.type
class OddQuery:
    @strawberry.field
    def odd(self) -> list[Odd]:
        async def later() -> str:
            return "late"

        row = Odd(missing=None, colour="purple", count="many", fine=later())  # type: ignore[arg-type]
        return [row, Odd(missing="here", colour=Colour.RED, count=3, fine=None)]


def test_leaves_off_the_happy_path_error_exactly_like_graphql_core() -> None:
    documents = [
        "{ odd { missing } }",
        "{ odd { colour } }",
        "{ odd { count fine } }",
        "{ odd { fine colour count } }",
    ]
    fast = strawberry.Schema(OddQuery, execution_context_class=StudioExecutionContext)
    reference = strawberry.Schema(OddQuery)
    for document in documents:
        mine = asyncio.run(fast.execute(document))
        theirs = asyncio.run(reference.execute(document))
        assert mine.data == theirs.data, document
        assert [e.formatted for e in mine.errors or []] == [
            e.formatted for e in theirs.errors or []
        ], document
        assert mine.errors, document  # each document does hit an error
