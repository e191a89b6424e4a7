"""Differential tests of ``schema.execution`` (operation plans, and plain leaves read without
graphql-core's per-field machinery): for documents drawn from the live schema and for the
Studio's own operations, the fast schema's answers — data, errors, messages, paths, codes,
HTTP status — are byte-identical to the reference build's (graphql-core throughout), for
callers with every scope, with partial scopes (guarded fields null with FORBIDDEN), and for
ids of another tenant. Each answer is also counted by how the fast build produced it (on its
plan, by graphql-core after abandoning the plan, or by graphql-core outright), and the Studio
page must run on its plan. A schema of odd fields (errors at every depth, in lists, async and
sync, nulls for non-null, refused guards, rejected types) answers exactly as graphql-core
does. Also: the validation cache is hit for a repeated document."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Generator, Iterator
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
from strawberry.permission import PermissionExtension

from studio_integrations.app import create_app
from studio_integrations.auth.guards import HasScope, requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.persistence.models import IntegrationConnection, IntegrationRun
from studio_integrations.schema import execution
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
# How the fast build answered: "plan", "abandoned" (graphql-core after the plan gave up) or
# "graphql-core" (no plan: a mutation, a directive, an abstract type, a guard refused...).
PATHS: Counter[str] = Counter()

# The Studio page's operations the way a client with fragments and directives writes them.
FRAGMENTS = """
query ($first: Int!) {
  integrationConnections(first: $first) {
    nodes { ...Row id provider { ...P } runs(first: 2) { nodes { id ...Run } } }
    pageInfo { ...Page }
    __typename
  }
}
fragment Row on IntegrationConnection {
  id name status viewerCan { test } credential { id } provider { key }
  health { status }
}
fragment P on Provider { id name __typename }
fragment Run on IntegrationRun { status kind traceUrl }
fragment Page on PageInfo { hasNextPage endCursor }
"""
DIRECTIVES = """
query ($first: Int!, $withRuns: Boolean!) {
  integrationConnections(first: $first) {
    nodes { id credential @include(if: $withRuns) { id } runs(first: 1) @skip(if: $withRuns) { nodes { id } } }
  }
}
"""
MERGED = """
query {
  a: integrationConnections(first: 2) { nodes { id name } }
  integrationConnections(first: 3) { nodes { id } edges { cursor node { id provider { id } } } }
  b: credentials(first: 2) { nodes { id connections { id name } } }
  integrationConnections(first: 3) { nodes { status provider { key } } }
}
"""


@pytest.fixture(autouse=True)
def counted_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts how the fast build answers each operation (its executor runs nowhere else)."""
    choose = StudioExecutionContext._operation_plan
    run = execution._PlanRun.run

    def operation_plan(self: StudioExecutionContext) -> Any:
        plan = choose(self)
        if plan is None:
            PATHS["graphql-core"] += 1
        return plan

    async def plan_run(self: Any, plan: Any, root_value: Any) -> Any:
        try:
            data = await run(self, plan, root_value)
        except Exception:
            PATHS["abandoned"] += 1
            raise
        PATHS["plan"] += 1
        return data

    monkeypatch.setattr(StudioExecutionContext, "_operation_plan", operation_plan)
    monkeypatch.setattr(execution._PlanRun, "run", plan_run)


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
        pair.ask(FRAGMENTS, scopes, {"first": 3})
        pair.ask(MERGED, scopes)
        for with_runs in (True, False):
            pair.ask(DIRECTIVES, scopes, {"first": 2, "withRuns": with_runs})
        for id_ in (*pair.own_ids, *pair.foreign_ids):
            pair.ask(NODE, scopes, {"id": id_})


def test_the_studio_page_runs_on_its_plan(pair: Pair) -> None:
    """With every scope the page never touches graphql-core's field execution; without
    `credentials:read` (a guard in the page would refuse) graphql-core answers it."""
    PATHS.clear()
    pair.ask(STUDIO_QUERY, "all", {"first": 3})
    pair.ask(FRAGMENTS, "all", {"first": 3})
    assert PATHS == {"plan": 2}
    PATHS.clear()
    pair.ask(STUDIO_QUERY, "connections:read providers:read", {"first": 3})
    assert PATHS == {"graphql-core": 1}


async def _odd_connections(pair: Pair) -> None:
    """Acme connections the seed has none of: no credential; a health row never checked; no
    health row; a provider acme cannot see (globex's: its ``provider`` field raises)."""
    from sqlalchemy import select

    from studio_integrations.core.enums import (
        AuthMode,
        CircuitState,
        ConnectionStatus,
        HealthStatus,
    )
    from studio_integrations.core.ids import new_id
    from studio_integrations.persistence.db import TenantScope
    from studio_integrations.persistence.models import ConnectionHealth, Provider

    db = pair.server.live.services.db
    async with db.read_session(TenantScope.of("globex")) as session:
        foreign = (await session.execute(select(Provider.id).limit(1))).scalar_one()
    async with db.read_session(TenantScope.of("acme")) as session:
        own = (await session.execute(select(Provider.id).limit(1))).scalar_one()

    def connection(name: str, provider_id: str) -> IntegrationConnection:
        return IntegrationConnection(
            id=new_id("IntegrationConnection"),
            tenant_id="acme",
            project_id="proj-odd",
            provider_id=provider_id,
            name=name,
            status=ConnectionStatus.ACTIVE,
            auth_mode=AuthMode.API_KEY,
            credential_id=None,
            configuration={},
        )

    async with db.transaction(TenantScope.of("acme")) as session:
        session.add(connection("foreign provider", foreign))
    unchecked = connection("never checked", own)  # newer, so before it on the page
    async with db.transaction(TenantScope.of("acme")) as session:
        session.add_all([connection("no health", own), unchecked])
        await session.flush()
        session.add(
            ConnectionHealth(
                connection_id=unchecked.id,
                tenant_id="acme",
                status=HealthStatus.HEALTHY,
                circuit_state=CircuitState.CLOSED,
            )
        )


def test_loaded_fields_resolve_a_wave_in_one_call_and_answer_alike(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``provider``, ``credential`` and ``health`` (``loaded_field``) resolve every object of
    the plan's wave with one ``resolve_many`` and never one by one; graphql-core (the
    reference build) resolves them one by one. The answers match with no credential, health
    unchecked or missing, and a provider the tenant cannot see, whose error abandons the
    plan."""
    from studio_integrations.resolvers.loaders import LoadedField

    calls: Counter[str] = Counter()
    one, many = LoadedField.resolve, LoadedField.resolve_many

    async def resolve(self: LoadedField[Any, Any, Any, Any], *args: Any) -> Any:
        calls["one"] += 1
        return await one(self, *args)

    async def resolve_many(self: LoadedField[Any, Any, Any, Any], *args: Any) -> Any:
        calls["many"] += 1
        return await many(self, *args)

    monkeypatch.setattr(LoadedField, "resolve", resolve)
    monkeypatch.setattr(LoadedField, "resolve_many", resolve_many)
    PATHS.clear()
    pair.ask(STUDIO_QUERY, "all", {"first": 10})
    assert PATHS == {"plan": 1}
    # The fast build: three fields, one call each; the reference: three per connection.
    assert calls == {"many": 3, "one": 3 * 4}

    pair.server.run(_odd_connections(pair))
    for scopes in SCOPES:
        for first in (2, 3, 10):
            pair.ask(STUDIO_QUERY, scopes, {"first": first})
            pair.ask(FRAGMENTS, scopes, {"first": first})
    PATHS.clear()
    pair.ask(STUDIO_QUERY, "all", {"first": 2})  # no credential, no or unchecked health
    assert PATHS == {"plan": 1}
    PATHS.clear()
    pair.ask(STUDIO_QUERY, "all", {"first": 10})
    assert PATHS == {"abandoned": 1}  # the foreign provider's error


@examples(120)
@given(data=st.data())
def test_documents_from_the_schema_answer_identically(pair: Pair, data: st.DataObject) -> None:
    ids = SimpleNamespace(seeded_ids=pair.own_ids + pair.foreign_ids)
    builder = DocumentBuilder(data, ids)  # type: ignore[arg-type]
    assert SCHEMA.query_type is not None
    query = "query " + builder.selection(SCHEMA.query_type, 1)
    pair.ask(query, data.draw(st.sampled_from(SCOPES)))


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


class Later:
    """An awaitable attribute that, unlike a coroutine, does not warn when a document that
    does not select it leaves it unawaited."""

    def __await__(self) -> Generator[None, None, str]:
        yield from ()
        return "late"


@strawberry.type
class OddQuery:
    @strawberry.field
    def odd(self) -> list[Odd]:
        row = Odd(missing=None, colour="purple", count="many", fine=Later())  # type: ignore[arg-type]
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


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Branch(Named):
    """Fields off the plan's happy path at every depth: async and sync resolvers that raise,
    a null for a non-null field, a guarded field, an object ``is_type_of`` rejects, a list
    with a null item, and resolvers that read their path and arguments."""

    name: str
    colour: Colour
    note: str | None = None

    @strawberry.field
    async def loud(self) -> str:
        return self.name.upper()

    @strawberry.field
    async def fails(self) -> str | None:
        raise ValueError(f"{self.name} failed")

    @strawberry.field
    def fails_now(self) -> str | None:
        raise ValueError(f"{self.name} failed at once")

    @strawberry.field
    async def nothing(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field(extensions=requires(Scope.CREDENTIALS_READ))
    async def guarded(self) -> str | None:
        return f"{self.name} guarded"

    @strawberry.field
    async def children(self) -> list[Branch]:
        return [Branch(name=f"{self.name}.{i}", colour=Colour.RED) for i in range(2)]

    @strawberry.field
    def holes(self) -> list[Branch]:
        return [Branch(name=f"{self.name}.h", colour=Colour.RED), None]  # type: ignore[list-item]

    @strawberry.field
    def impostor(self) -> Branch | None:
        return Odd(missing="x", colour=Colour.RED, count=1, fine=None)  # type: ignore[return-value]

    @strawberry.field
    def disguised(self) -> list[Branch]:
        """A Branch, then a Branch cast to another type: ``is_type_of`` accepts the class
        once, and must still refuse the marked instance."""
        twin = Branch(name=f"{self.name}.cast", colour=Colour.RED)
        return [Branch(name=f"{self.name}.d", colour=Colour.RED), strawberry.cast(Odd, twin)]

    @strawberry.field
    def path(self, info: strawberry.Info) -> str:
        return "/".join(str(key) for key in info.path.as_list())

    @strawberry.field
    def echo(self, word: str = "x") -> str:
        return word


@strawberry.type
class TreeQuery:
    @strawberry.field
    async def trees(self) -> list[Branch]:
        return [Branch(name=f"t{i}", colour=Colour.RED) for i in range(3)]

    @strawberry.field
    def tree(self) -> Branch:
        return Branch(name="root", colour=Colour.RED, note="n")

    @strawberry.field
    def named(self) -> Named:
        return Branch(name="named", colour=Colour.RED)


TREE_DOCUMENTS = [
    # on the plan
    "{ trees { name colour note loud path __typename } tree { children { path loud } } }",
    "{ tree { ...F children { ...F children { ...F } } } } fragment F on Branch { name loud }",
    '{ tree { echo(word: "hi") again: echo } }',
    "{ trees { guarded } }",
    # abandoned: errors at every depth, async and sync, several at a time
    "{ trees { name fails } }",
    "{ trees { failsNow children { fails name } } tree { fails } }",
    "{ trees { nothing } }",
    "{ tree { children { children { nothing name } } } more: trees { fails } }",
    "{ tree { impostor { name } } }",
    "{ tree { holes { name } } }",
    "{ tree { children { loud holes { loud } } note } }",
    "{ trees { name } tree { disguised { name } } }",
    # never planned: directives, abstract types
    "{ tree { name @include(if: false) loud } }",
    "{ named { name ... on Branch { loud } } }",
]


@dataclass
class Caller:
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes


def test_the_plan_answers_exactly_like_graphql_core_or_gives_way() -> None:
    fast = strawberry.Schema(TreeQuery, execution_context_class=StudioExecutionContext)
    reference = strawberry.Schema(TreeQuery)
    before = PATHS.copy()
    for scopes in (frozenset(Scope), frozenset({Scope.CONNECTIONS_READ})):
        context = SimpleNamespace(principal=Caller(scopes))
        for document in TREE_DOCUMENTS:
            mine = asyncio.run(fast.execute(document, context_value=context))
            theirs = asyncio.run(reference.execute(document, context_value=context))
            assert mine.data == theirs.data, document
            assert [e.formatted for e in mine.errors or []] == [
                e.formatted for e in theirs.errors or []
            ], document
            COMPARED.append(document)
    PATHS.subtract(before)
    # The first three documents, and the guarded field for a caller with its scope, ran on
    # the plan; the errors abandoned it; directives, abstract types and the guarded field
    # for a caller without its scope never had one.
    assert PATHS["plan"] == 2 * 3 + 1
    assert PATHS["abandoned"] == 2 * 8
    assert PATHS["graphql-core"] == 2 * 2 + 1
    PATHS.update(before)


class Picky(HasScope):
    """A guard that asks more than the principal's scopes: the plan must not skip it."""

    async def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return await super().has_permission(source, info, **kwargs) and source.name != "t9"


@strawberry.type
class Guarded:
    name: str

    @strawberry.field(extensions=requires(Scope.CREDENTIALS_READ))
    async def secret(self, info: strawberry.Info, suffix: str = "!") -> str | None:
        return f"{self.name} {info.path.as_list()} {suffix}"

    @strawberry.field(extensions=[PermissionExtension(permissions=[Picky(Scope.CREDENTIALS_READ)])])
    def picky(self) -> str | None:
        return self.name


@strawberry.type
class GuardedQuery:
    @strawberry.field
    def rows(self, count: int = 3) -> list[Guarded]:
        return [Guarded(name=f"t{i}") for i in range(count)]


def test_scope_guards_on_the_plan_are_decided_once_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plan runs only for a caller with every guarded scope of its document, so a field
    guarded by ``requires`` alone is resolved without asking its guard again per object;
    any other permission still runs for every object (and its refusal hands the operation
    to graphql-core); a caller without the scope gets graphql-core's FORBIDDEN errors."""
    checks: Counter[str] = Counter()
    resolve_async = PermissionExtension.resolve_async

    async def counted(self: PermissionExtension, *args: Any, **kwargs: Any) -> Any:
        checks[type(self.permissions[0]).__name__] += 1
        return await resolve_async(self, *args, **kwargs)

    monkeypatch.setattr(PermissionExtension, "resolve_async", counted)
    fast = strawberry.Schema(GuardedQuery, execution_context_class=StudioExecutionContext)
    reference = strawberry.Schema(GuardedQuery)
    document = '{ rows(count: %d) { name secret loud: secret(suffix: "?") picky } }'
    cases = [  # (scopes, rows, the fast build's permission checks)
        (frozenset(Scope), 3, {"Picky": 3}),  # on the plan
        (frozenset(Scope), 10, {"Picky": 10 + 10, "HasScope": 20}),  # t9 refused: abandoned
        (frozenset(), 3, {"Picky": 3, "HasScope": 6}),  # no plan: every guard refuses
    ]
    for scopes, count, fast_checks in cases:
        context = SimpleNamespace(principal=Caller(scopes))
        checks.clear()
        mine = asyncio.run(fast.execute(document % count, context_value=context))
        assert checks == fast_checks
        theirs = asyncio.run(reference.execute(document % count, context_value=context))
        assert mine.data == theirs.data
        assert [e.formatted for e in mine.errors or []] == [
            e.formatted for e in theirs.errors or []
        ]
        assert bool(theirs.errors) == (count == 10 or not scopes)
        COMPARED.append(document % count)


def test_the_differential_suite_compared_documents() -> None:
    """Runs last in this module: how many requests the two builds answered identically."""
    print(
        f"\nfast vs reference execution: {len(COMPARED)} documents compared "
        f"({len(set(COMPARED))} distinct); fast build answered on its plan "
        f"{PATHS['plan']}, abandoned its plan {PATHS['abandoned']}, without a plan "
        f"{PATHS['graphql-core']}"
    )
    if COMPARED:
        assert len(set(COMPARED)) > 10
