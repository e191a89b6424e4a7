"""A tenant's JSON Schema patterns cost linear time and never hold the event loop.

Before RE2, ``^(a+)+$`` against 26 ``a`` and a ``!`` blocked the whole server for seconds,
doubling with each character; these tests use 40 (hours of backtracking).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from studio_integrations.domain import connections as connections_domain
from studio_integrations.domain import json_schemas
from tests.conftest import TokenFactory
from tests.connections.conftest import (
    ESTABLISH,
    REGISTER_PROVIDER,
    establish_input,
    ok,
    register_fake_provider,
    register_secret_credential,
    user_errors,
)
from tests.support.live import LiveServer

EVIL = "^(a+)+$"
ATTACK = "a" * 40 + "!"

pytestmark = pytest.mark.backends


async def _attack_world(
    server: LiveServer, http: httpx.AsyncClient, token: str, schema: dict[str, Any]
) -> tuple[str, str]:
    provider_id = await register_fake_provider(
        http,
        token,
        "https://hr.example.com",
        configurationSchema=schema,
        verification={"method": "GET", "path": "/me", "expectStatus": 200},
    )
    credential_id = await register_secret_credential(http, token, server.services.vault)
    return provider_id, credential_id


def _pattern_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"account": {"type": "string", "pattern": EVIL}},
        "required": ["account"],
    }


async def _establish(
    http: httpx.AsyncClient, token: str, provider_id: str, credential_id: str, config: Any
) -> list[tuple[str | None, str, str]]:
    data = await ok(
        http,
        ESTABLISH,
        {"input": establish_input(provider_id, credential_id, configuration=config, runTest=False)},
        token,
    )
    return user_errors(data["establishConnection"])


async def test_backtracking_pattern_is_refused_in_linear_time(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    provider_id, credential_id = await _attack_world(server, http, token, _pattern_schema())
    errors = await _establish(http, token, provider_id, credential_id, {"account": ATTACK})
    assert [(f, c) for f, c, _ in errors] == [
        ("input.configuration.account", "INVALID_CONFIGURATION")
    ]
    # The same pattern still accepts what it describes.
    assert await _establish(http, token, provider_id, credential_id, {"account": "a" * 40}) == []


async def test_backtracking_pattern_properties_are_linear_too(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    schema = {
        "type": "object",
        "patternProperties": {EVIL: {"type": "string"}},
        "additionalProperties": False,
    }
    provider_id, credential_id = await _attack_world(server, http, token, schema)
    errors = await _establish(http, token, provider_id, credential_id, {ATTACK: "x"})
    assert [c for _, c, _ in errors] == ["INVALID_CONFIGURATION"]
    assert "not allowed" in errors[0][2]
    assert await _establish(http, token, provider_id, credential_id, {"a" * 40: "x"}) == []


async def test_healthz_answers_while_an_attack_is_being_validated(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack's validation is held in its worker until /healthz has answered: were the
    validation on the event loop, /healthz could not answer before it (it would wait until
    the hold gave up), so the order of completion proves the loop stayed free."""
    token = make_token()
    provider_id, credential_id = await _attack_world(server, http, token, _pattern_schema())
    started, healthz_answered = threading.Event(), threading.Event()
    real = connections_domain._schema_errors

    def held(schema: dict[str, Any], config: dict[str, Any]) -> Any:
        started.set()
        healthz_answered.wait(30)  # a guard against a hang, not a measurement
        return real(schema, config)

    monkeypatch.setattr(connections_domain, "_schema_errors", held)
    finished: list[str] = []

    async def attack() -> list[tuple[str | None, str, str]]:
        errors = await _establish(http, token, provider_id, credential_id, {"account": ATTACK})
        finished.append("attack")
        return errors

    async def healthz() -> int:
        await asyncio.to_thread(started.wait, 30)
        response = await http.get("/healthz")
        finished.append("healthz")
        healthz_answered.set()
        return response.status_code

    errors, status = await asyncio.gather(attack(), healthz())
    assert status == 200
    assert finished == ["healthz", "attack"]
    assert [c for _, c, _ in errors] == ["INVALID_CONFIGURATION"]


async def test_validation_past_its_budget_is_a_field_error(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = make_token()
    provider_id, credential_id = await _attack_world(server, http, token, _pattern_schema())
    release = threading.Event()
    real = connections_domain._schema_errors

    def slow(schema: dict[str, Any], config: dict[str, Any]) -> Any:
        release.wait(30)
        return real(schema, config)

    monkeypatch.setattr(connections_domain, "_schema_errors", slow)
    monkeypatch.setattr(json_schemas, "VALIDATION_BUDGET_SECONDS", 0.01)
    try:
        errors = await _establish(http, token, provider_id, credential_id, {"account": "aaa"})
    finally:
        release.set()
    assert [(f, c) for f, c, _ in errors] == [("input.configuration", "VALIDATION_TOO_COSTLY")]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(a)\\1"}}}, "/x/"),
        ({"type": "object", "patternProperties": {"^(?=a)": {}}}, "patternProperties"),
        (
            {
                "type": "object",
                "patternProperties": {"^a": {}},
                "unevaluatedProperties": False,
            },
            "unevaluatedProperties",
        ),
    ],
    ids=["backreference", "lookahead", "unevaluated-with-patterns"],
)
async def test_patterns_re2_cannot_run_are_refused_at_save(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    schema: dict[str, Any],
    where: str,
) -> None:
    token = make_token()
    provider = {
        "key": "re2-refused",
        "name": "Refused",
        "category": "HR",
        "capabilities": ["employees.read"],
        "authModes": ["API_KEY"],
        "baseUrl": "https://hr.example.com",
        "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
        "configurationSchema": schema,
    }
    data = await ok(http, REGISTER_PROVIDER, {"input": provider}, token)
    payload = data["registerProvider"]
    assert payload["provider"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("input.configurationSchema", "UNSUPPORTED_PATTERN")
    ]
    assert where in payload["userErrors"][0]["message"]
