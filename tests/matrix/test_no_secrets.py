"""No secrets anywhere: with a unique canary value planted as the secret of every credential
(and used live by every call), every webhook signing secret and every rotated value, the
whole API surface — every root query and every object reached through ``node(id:)``, each
with every field it has, nested — the logs, the audit events, the outbox and the outbound
webhook requests never contain one, in plain, URL-encoded or base64 form."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLUnionType,
    get_named_type,
    is_leaf_type,
)
from sqlalchemy import select

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import AuditEvent, OutboxMessage
from tests.connections.conftest import TEST
from tests.matrix.conftest import MATRIX, World
from tests.matrix.schema_walk import GRAPHQL, operation, root_fields
from tests.support.graphql import gql

MAX_DEPTH = 4

pytestmark = MATRIX


def full_selection(type_: Any, depth: int = MAX_DEPTH) -> str:
    """Every field of a type that needs no argument, nested ``depth`` levels."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    if isinstance(named, GraphQLInterfaceType | GraphQLUnionType):
        return " { __typename }"
    assert isinstance(named, GraphQLObjectType)
    parts = ["__typename"]
    for name, field in sorted(named.fields.items()):
        if any(isinstance(a.type, GraphQLNonNull) for a in field.args.values()):
            continue
        inner = get_named_type(field.type)
        if is_leaf_type(inner):
            parts.append(name)
        elif depth > 1:
            parts.append(name + full_selection(field.type, depth - 1))
    return " { " + " ".join(parts) + " }"


def forms(secret: str) -> set[str]:
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode().rstrip("="),
        json.dumps(secret)[1:-1],
    }


async def test_the_canary_appears_nowhere(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tw = world.a
    # A failing call too: the provider answers 500 echoing the request's headers back.
    from tests.connections.conftest import VERIFY_PATH
    from tests.fakes.provider import Reply

    world.fake.on(VERIFY_PATH, Reply(500, echo=True))
    body = await gql(world.http, TEST, {"id": tw.ids["IntegrationConnection"]}, token=tw.token)
    assert body["data"]["testConnection"]["run"]["status"] == "FAILED", body
    assert world.fake.seen(VERIFY_PATH)[-1].headers["x-api-key"] in world.canaries

    responses: list[str] = [json.dumps(body)]
    for ref in root_fields("query"):
        if ref.name == "node":
            continue
        document, variables = operation(ref, select=full_selection(ref.field.type))
        body = await gql(world.http, document, variables, token=tw.token)
        assert "errors" not in body, (ref.name, body)
        responses.append(json.dumps(body))
    for type_name, id_ in tw.ids.items():
        graphql_type = GRAPHQL.type_map[type_name]
        document = (
            f"query ($id: ID!) {{ node(id: $id) {{ ... on {type_name}"
            f"{full_selection(graphql_type)} }} }}"
        )
        body = await gql(world.http, document, {"id": id_}, token=tw.token)
        assert "errors" not in body and body["data"]["node"], (type_name, body)
        responses.append(json.dumps(body))

    async with world.server.services.db.session(TenantScope.system_scope()) as session:
        audit = [
            json.dumps(row.data) + row.subject_id
            for row in (await session.execute(select(AuditEvent))).scalars()
        ]
        outbox = [row.payload for row in (await session.execute(select(OutboxMessage))).scalars()]
    logs = [record.getMessage() + str(record.args) for record in caplog.records]
    # What left us: every outbound webhook request (headers with their signatures, bodies).
    webhooks = [
        json.dumps(seen.headers) + seen.body.decode("utf-8", "replace")
        for seen in world.receiver.received
    ]
    assert len(audit) > 10 and outbox and logs and webhooks

    haystacks = {
        "responses": responses,
        "audit": audit,
        "outbox": outbox,
        "logs": logs,
        "webhooks": webhooks,
    }
    for canary in world.canaries:
        for form in forms(canary):
            for where, texts in haystacks.items():
                assert not any(form in text for text in texts), f"{form!r} found in {where}"
