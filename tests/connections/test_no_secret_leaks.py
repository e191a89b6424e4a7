"""No response, log line, audit event or stored row carries a secret value.

Unique canaries are planted as the secrets of four connections (an API key sent as a header,
an API key sent as a query parameter, a BASIC password, an OAuth2 client secret, plus the
access tokens the fake provider issues for it). Each connection is established and tested
passing and failing, including against a provider that echoes the request's headers and query
back in a 500 body. Then every field of every connection, run and attempt (the selection is
built from the schema by introspection, so a field added later is searched too), the audit
log, every row of every table, and every log record of every logger at DEBUG (uvicorn and
httpx included) plus everything written to stdout/stderr are searched for each canary and
its base64, URL and JSON encodings.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.log_config import log_formatter
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import Base
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.connections.conftest import (
    ESTABLISH,
    TEST,
    establish_input,
    ok,
    register_fake_provider,
    register_secret_credential,
)
from tests.fakes.provider import FakeProvider, Reply
from tests.support.graphql import gql

INTROSPECT = """
query {
  __schema {
    types {
      name kind
      fields { name args { defaultValue type { kind } } type { ...Ref } }
    }
  }
}
fragment Ref on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
}
"""
MAX_NESTING = 5  # object levels below a root field (the server allows depth 10)


def _named(ref: dict[str, Any]) -> dict[str, Any]:
    while ref.get("ofType"):
        ref = ref["ofType"]
    return ref


class Selections:
    """Every field of a type that needs no argument, recursively, never re-entering a type
    already on the path (``edges`` skipped: ``nodes`` holds the same objects)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.types = {t["name"]: t for t in schema["types"]}

    def of(self, type_name: str, path: tuple[str, ...] = ()) -> str:
        parts: list[str] = []
        for f in self.types[type_name]["fields"] or []:
            if f["name"] == "edges" or any(
                a["type"]["kind"] == "NON_NULL" and a["defaultValue"] is None for a in f["args"]
            ):
                continue
            ref = _named(f["type"])
            if ref["kind"] in ("SCALAR", "ENUM"):
                parts.append(f["name"])
            elif ref["kind"] == "OBJECT":
                if ref["name"] in path or len(path) >= MAX_NESTING:
                    continue
                inner = self.of(ref["name"], (*path, ref["name"]))
                if inner:
                    parts.append(f"{f['name']} {{ {inner} }}")
            else:  # interfaces and unions
                parts.append(f"{f['name']} {{ __typename }}")
        return " ".join(parts)


def encodings(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    return {f for f in forms if len(f) >= 8}


@contextlib.contextmanager
def every_logger_at_debug(
    caplog: pytest.LogCaptureFixture, rendered: logging.Handler
) -> Iterator[None]:
    """caplog sees every record: root at DEBUG, and every existing logger (uvicorn's do not
    propagate) at DEBUG with caplog's handler attached where it would not reach the root.
    ``rendered`` (the service's JSON lines, extra fields and trace ids included) sees the
    same records."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger().addHandler(rendered)
    names = ["uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"]
    names += [n for n in logging.root.manager.loggerDict if n not in names]
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in names:
        logger = logging.getLogger(name)
        attach = not logger.propagate
        saved.append((logger, logger.level, attach))
        logger.setLevel(logging.DEBUG)
        if attach:
            logger.addHandler(caplog.handler)
            logger.addHandler(rendered)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(rendered)
        for logger, level, attached in saved:
            logger.setLevel(level)
            if attached:
                logger.removeHandler(caplog.handler)
                logger.removeHandler(rendered)


def canary(kind: str) -> str:
    # '+', '/' and '=' make the URL and JSON encodings differ from the raw value.
    return f"cAnary-{kind}+{uuid.uuid4().hex}/x="


async def test_no_secret_reaches_a_response_event_row_or_log(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    fake: FakeProvider,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    token = make_token(tenant="acme")
    vault = services.vault
    header_key, query_key, password, client_secret = (
        canary("header"),
        canary("query"),
        canary("basic"),
        canary("oauth"),
    )
    oauth = fake.enable_oauth("studio-client", client_secret)

    # Four providers on the one fake, each verified on its own path.
    def verification(prefix: str) -> dict[str, Any]:
        return {"method": "GET", "path": f"/{prefix}/{{account}}/me", "expectStatus": 200}

    setups = [
        ("header", "API_KEY", header_key, {}),
        (
            "query",
            "API_KEY",
            query_key,
            {"authScheme": {"apiKey": {"in": "query", "names": ["api_key"]}}},
        ),
        ("basic", "BASIC", f"studio-user:{password}", {}),
        (
            "oauth",
            "OAUTH2_CLIENT_CREDENTIALS",
            json.dumps({"client_id": "studio-client", "client_secret": client_secret}),
            {"authScheme": {"oauth2": {"tokenUrl": "/oauth/token"}}},
        ),
    ]
    bodies: list[Any] = []
    connection_ids: list[str] = []
    attempt_ids: list[str] = []  # failed establish attempts: never listed, read by id
    json_lines = io.StringIO()
    rendered = logging.StreamHandler(json_lines)
    rendered.setFormatter(log_formatter(json=True))
    with every_logger_at_debug(caplog, rendered):
        for prefix, mode, secret, extra in setups:
            path = f"/{prefix}/acme-1/me"
            provider_id = await register_fake_provider(
                http,
                token,
                fake.base_url,
                key=f"leak-{prefix}",
                authModes=[mode],
                verification=verification(prefix),
                **extra,
            )
            credential_id = await register_secret_credential(
                http, token, vault, name=f"leak-{prefix}", value=secret, auth_mode=mode
            )
            if prefix == "oauth":
                fake.protect(path)
            elif prefix == "header":
                fake.require_key(path, {header_key})
            fake.on(path, Reply(json={"ok": True}, headers={"X-Request-Id": f"req-{prefix}"}))

            # Establish with a passing test.
            data = await ok(
                http,
                ESTABLISH,
                {
                    "input": establish_input(
                        provider_id, credential_id, authMode=mode, name=f"leak {prefix}"
                    )
                },
                token,
            )
            bodies.append(data)
            payload = data["establishConnection"]
            assert payload["userErrors"] == [], payload
            assert payload["testRun"]["status"] == "SUCCEEDED", payload
            connection_id = payload["connection"]["id"]
            connection_ids.append(connection_id)

            # The provider echoes every header and query parameter back in a 500 (retried).
            fake.on(path, Reply(500, echo=True))
            data = await ok(http, TEST, {"id": connection_id}, token)
            bodies.append(data)
            run = data["testConnection"]["run"]
            assert (run["status"], run["errorCategory"]) == ("FAILED", "SERVER_ERROR"), run

            # Refused outright, and an establishment whose test fails on the echo.
            fake.on(path, Reply(401, echo=True))
            bodies.append(await ok(http, TEST, {"id": connection_id}, token))
            data = await ok(
                http,
                ESTABLISH,
                {
                    "input": establish_input(
                        provider_id, credential_id, authMode=mode, name=f"leak {prefix} 2"
                    )
                },
                token,
            )
            bodies.append(data)
            assert [e["code"] for e in data["establishConnection"]["userErrors"]] == [
                "CONNECTION_TEST_FAILED"
            ]
            attempt_ids.append(data["establishConnection"]["testRun"]["connectionId"])

        # Read back everything: every field of every connection, run and attempt, the audit
        # log, and the other lists a Studio page shows.
        schema = (await ok(http, INTROSPECT, {}, token))["__schema"]
        select_all = Selections(schema)
        connection_fields = select_all.of("IntegrationConnection", ("IntegrationConnection",))
        assert "responseExcerpt" in connection_fields  # runs { nodes { attempts { … } } }
        # (Eight connections: a page of eight keeps the full selection under the cost limit.)
        listing = await gql(
            http,
            f"{{ integrationConnections(first: 8) {{ nodes {{ {connection_fields} }} }} }}",
            token=token,
        )
        assert "errors" not in listing, listing
        nodes = listing["data"]["integrationConnections"]["nodes"]
        assert {n["id"] for n in nodes} == set(connection_ids)
        bodies.append(listing)
        run_ids = [r["id"] for n in nodes for r in n["runs"]["nodes"]]
        run_fields = select_all.of("IntegrationRun", ("IntegrationRun",))
        for node_id in connection_ids + attempt_ids + run_ids:
            fragment = "IntegrationConnection" if node_id.startswith("conn_") else "IntegrationRun"
            fields = connection_fields if fragment == "IntegrationConnection" else run_fields
            body = await gql(
                http,
                f'{{ node(id: "{node_id}") {{ ... on {fragment} {{ {fields} }} }} }}',
                token=token,
            )
            assert "errors" not in body, body
            bodies.append(body)
            if node_id in attempt_ids:
                nodes.append(body["data"]["node"])
        audit = await gql(
            http,
            f"{{ auditEvents(first: 100) {{ nodes {{ {select_all.of('AuditEvent', ('AuditEvent',))} }} }} }}",
            token=token,
        )
        assert "errors" not in audit, audit
        bodies.append(audit)
        # Other lists a Studio page shows (credentials are searched as connections' field).
        query_fields = {
            f["name"]: _named(f["type"])["name"]
            for t in schema["types"]
            if t["name"] == "Query"
            for f in t["fields"]
        }
        for root in ("providers", "integrationFailures"):
            type_name = query_fields[root]
            body = await gql(
                http,
                f"{{ {root}(first: 40) {{ {select_all.of(type_name, (type_name,))} }} }}",
                token=token,
            )
            assert "errors" not in body, body
            bodies.append(body)

    # The secrets really went out, and the echoes really carried them back.
    seen = fake.requests
    assert any(r.headers.get("x-api-key") == header_key for r in seen)
    assert any(r.params.get("api_key") == query_key for r in seen)
    basic = "Basic " + base64.b64encode(f"studio-user:{password}".encode()).decode()
    assert any(r.headers.get("authorization") == basic for r in seen)
    assert oauth.issued >= 1
    tokens = [
        r.headers["authorization"].removeprefix("Bearer ")
        for r in fake.seen("/oauth/acme-1/me")
        if r.headers.get("authorization", "").startswith("Bearer ")
    ]
    assert tokens
    excerpts = [
        a["responseExcerpt"]
        for n in nodes
        for r in n["runs"]["nodes"]
        for a in r["attempts"]
        if a["responseExcerpt"]
    ]
    assert len(excerpts) >= 4 * 5  # per connection: three 500s and one 401 echoed
    assert all("[REDACTED]" in e for e in excerpts), excerpts

    secrets = [header_key, query_key, password, f"studio-user:{password}", client_secret, *tokens]
    needles = {form for secret in secrets for form in encodings(secret)}
    needles.add(basic.removeprefix("Basic "))

    def assert_clean(text: str, where: str) -> None:
        for needle in needles:
            assert needle not in text, f"a secret ({needle[:12]}…) is in {where}"

    for body in bodies:
        assert_clean(json.dumps(body), "a GraphQL response")
    async with services.db.session(TenantScope.system_scope()) as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            assert_clean(json.dumps([list(r) for r in rows], default=str), f"table {table.name}")
    # The fake provider's own access log (the provider's side, not ours) shows the URL it
    # was sent, query-string API key included: those lines are not the service's.
    fake_paths = (*[f"/{prefix}/acme-1/me" for prefix, *_ in setups], "/oauth/token")

    def ours(record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            record.name == "uvicorn.access"
            and len(args) > 2
            and str(args[2]).startswith(fake_paths)
        )

    assert caplog.records, "nothing was logged: the search would prove nothing"
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert any(r.name.startswith("uvicorn") for r in caplog.records)
    records = [r for r in caplog.records if ours(r)]
    assert len(records) < len(caplog.records)  # the provider's lines were there to skip
    for record in records:
        assert_clean(record.getMessage(), f"a log record of {record.name}")
        assert_clean(repr(record.args), f"the arguments of a log record of {record.name}")
        if record.exc_text:
            assert_clean(record.exc_text, f"a traceback logged by {record.name}")
    # The JSON lines as the service writes them: every record's extra fields (the request
    # lines' tenant, subject, operation, …) and trace ids rendered.
    requests = [
        json.loads(line)
        for line in json_lines.getvalue().splitlines()
        if '"event": "request"' in line
    ]
    assert requests and all(len(r["trace_id"]) == 32 for r in requests)
    assert_clean(
        "\n".join(
            line
            for line in json_lines.getvalue().splitlines()
            if not any(f"{m} {p}" in line for p in fake_paths for m in ("GET", "POST"))
        ),
        "the JSON log lines",
    )
    out, err = capfd.readouterr()
    printed = [
        line
        for line in (out + err).splitlines()
        if not any(f'"{m} {p}' in line for p in fake_paths for m in ("GET", "POST"))
    ]
    assert_clean("\n".join(printed), "stdout/stderr")
