"""Document limits (depth 10, aliases 30, tokens 15,000) and error shaping."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.errors import NotFound
from studio_integrations.schema.extensions import MAX_TOKENS, schema_extensions
from tests.conftest import TokenFactory
from tests.support.graphql import error_codes, gql


@strawberry.type
class Folder:
    name: str

    @strawberry.field
    def child(self) -> Folder:
        return Folder(name=self.name + "/c")


@dataclass
class FakeContext:
    principal: Any
    trace_id: str = "0af7651916cd43dd8448eb211c80319c"


@dataclass
class FakePrincipal:
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes


WRITES: list[str] = []


@strawberry.type
class Query:
    @strawberry.field
    def root(self) -> Folder:
        return Folder(name="")

    @strawberry.field
    def broken(self) -> str | None:
        raise RuntimeError("database password is hunter2")

    @strawberry.field
    def missing(self) -> str | None:
        raise NotFound("no such thing")

    @strawberry.field(extensions=requires(Scope.AUDIT_READ))
    def secret_report(self) -> str | None:
        return "numbers"

    @strawberry.field
    def public(self) -> str:
        return "hello"


@strawberry.type
class Mutation:
    @strawberry.mutation(extensions=requires(Scope.PROVIDERS_WRITE))
    def register_thing(self, name: str) -> str | None:
        WRITES.append(name)
        return name


test_schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=schema_extensions())


def _nested(levels: int) -> str:
    """A document whose fields nest ``levels`` deep: root, child, child, …, name."""
    inner = "name"
    for _ in range(levels - 2):
        inner = f"child {{ {inner} }}"
    return f"{{ root {{ {inner} }} }}"


async def _run(document: str, scopes: frozenset[Scope] = frozenset()) -> Any:
    return await test_schema.execute(document, context_value=FakeContext(FakePrincipal(scopes)))


async def test_depth_limit() -> None:
    # Depth counts from 0 at the root fields, so 11 nested levels are depth 10.
    assert (await _run(_nested(11))).errors is None
    result = await _run(_nested(12))
    assert result.errors is not None
    assert "exceeds maximum operation depth of 10" in result.errors[0].message
    assert result.data is None


async def test_unexpected_errors_are_masked_with_the_trace_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="studio_integrations.core.errors"):
        result = await _run("{ broken public }")
    assert result.data == {"broken": None, "public": "hello"}
    (error,) = result.errors or []
    assert error.message == "Unexpected error."
    assert "hunter2" not in str(error.formatted)
    assert error.extensions == {
        "code": "INTERNAL_SERVER_ERROR",
        "traceId": "0af7651916cd43dd8448eb211c80319c",
    }
    assert "hunter2" in caplog.text  # the detail is in the log, under the trace id
    assert "0af7651916cd43dd8448eb211c80319c" in caplog.text


async def test_project_errors_keep_message_and_code() -> None:
    result = await _run("{ missing }")
    (error,) = result.errors or []
    assert error.message == "no such thing"
    assert error.extensions == {"code": "NOT_FOUND"}


async def test_field_guard_nulls_only_the_guarded_field() -> None:
    result = await _run("{ secretReport public }")
    assert result.data == {"secretReport": None, "public": "hello"}
    (error,) = result.errors or []
    assert error.extensions == {"code": "FORBIDDEN"}
    assert error.path == ["secretReport"]
    assert "audit:read" in error.message
    allowed = await _run("{ secretReport }", frozenset({Scope.AUDIT_READ}))
    assert allowed.data == {"secretReport": "numbers"}


async def test_guarded_mutation_is_refused_whole_and_changes_nothing() -> None:
    WRITES.clear()
    result = await _run('mutation { registerThing(name: "x") }', frozenset({Scope.AUDIT_READ}))
    assert result.data == {"registerThing": None}
    assert [e.extensions for e in result.errors or []] == [{"code": "FORBIDDEN"}]
    assert WRITES == []
    await _run('mutation { registerThing(name: "y") }', frozenset({Scope.PROVIDERS_WRITE}))
    assert WRITES == ["y"]


# --- the same limits on the live server -----------------------------------------------


async def test_31_aliases_are_refused(http: httpx.AsyncClient, make_token: TokenFactory) -> None:
    ok = "{ " + " ".join(f"a{i}: viewer {{ subject }}" for i in range(30)) + " }"
    assert "errors" not in await gql(http, ok, token=make_token())
    too_many = "{ " + " ".join(f"a{i}: viewer {{ subject }}" for i in range(31)) + " }"
    body = await gql(http, too_many, token=make_token(), expect_status=200)
    assert body.get("data") is None
    assert "31 aliases found. Allowed: 30" in body["errors"][0]["message"]
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_documents_over_the_token_limit_are_refused(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    huge = "{ viewer { " + "subject " * MAX_TOKENS + "} }"
    body = await gql(http, huge, token=make_token())
    assert f"Document contains more than {MAX_TOKENS} tokens" in body["errors"][0]["message"]
    assert error_codes(body) == ["GRAPHQL_PARSE_FAILED"]


async def test_12_levels_deep_is_refused_on_the_live_schema(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    deep = "{ viewer " + "{ can " * 10 + "{ establishConnection }" + " }" * 10 + " }"  # 12 levels
    body = await gql(http, deep, token=make_token(), expect_status=200)
    messages = [e["message"] for e in body["errors"]]
    assert any("exceeds maximum operation depth of 10" in m for m in messages)
    assert body.get("data") is None


async def test_syntax_errors_are_clear(http: httpx.AsyncClient, make_token: TokenFactory) -> None:
    body = await gql(http, "{ viewer { ", token=make_token())
    assert body["errors"][0]["message"].startswith("Syntax Error")
    assert error_codes(body) == ["GRAPHQL_PARSE_FAILED"]
