"""The cross-area rule, beyond Node fields: data from another area needs that area's read
scope in health views, live events and audit payloads too.

Before it, ``externalHealth`` with only ``health:read`` showed a connection's configuration
and ``inboundSigningSecretRef`` and the provider's ``baseUrl``; ``auditEvents`` with only
``audit:read`` carried inbound webhook payloads (``webhooks:read`` everywhere else).
"""

from __future__ import annotations

import json
from collections import deque

import httpx
import pytest
from graphql import GraphQLObjectType, get_named_type
from sqlalchemy import update

from studio_integrations.auth.scopes import Scope
from studio_integrations.core.clock import utcnow
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import ConnectionHealth
from studio_integrations.resolvers.node import NODE_TYPES
from tests.conftest import TokenFactory
from tests.matrix.schema_walk import guard_of, root_fields
from tests.matrix.test_static import CROSS_AREA_ALLOWED
from tests.support.graphql import gql
from tests.support.live import LiveServer
from tests.webhooks.test_inbound import BODY, make_connection


def test_every_path_into_another_area_is_guarded_by_its_scope() -> None:
    """Walks from every guarded query and subscription root through unguarded fields: a
    field that reaches another area's object (a Node type read with another scope) must be
    guarded by that scope, whichever view (health, failures, events) it is reached from."""
    problems: set[str] = set()
    start: deque[tuple[GraphQLObjectType, Scope]] = deque()
    for kind in ("query", "subscription"):
        for ref in root_fields(kind):
            named = get_named_type(ref.field.type)
            if ref.scope is not None and isinstance(named, GraphQLObjectType):
                start.append((named, ref.scope))
    seen: set[tuple[str, Scope]] = set()
    while start:
        graphql_type, area = start.popleft()
        if (graphql_type.name, area) in seen:
            continue
        seen.add((graphql_type.name, area))
        for field_name, field in graphql_type.fields.items():
            target = get_named_type(field.type)
            if not isinstance(target, GraphQLObjectType):
                continue
            guard = guard_of(field)
            node = NODE_TYPES.get(target.name)
            allowed = (graphql_type.name, field_name) in CROSS_AREA_ALLOWED
            if node is not None and node.scope != area and guard != node.scope and not allowed:
                problems.add(
                    f"{graphql_type.name}.{field_name} leads from {area.value} into "
                    f"{target.name}: guard it with {node.scope.value}"
                )
            start.append((target, guard or (node.scope if node and allowed else area)))
    assert not problems, sorted(problems)


HEALTH = """
{ externalHealth {
    connections { connectionId status connection { id configuration inboundSigningSecretRef } }
    providers { providerId status provider { id baseUrl } }
} }
"""


@pytest.mark.backends
async def test_external_health_with_health_read_shows_no_configuration(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    # As if probed once (external health lists connections checked at least once).
    async with server.services.db.transaction(TenantScope.of("acme")) as session:
        await session.execute(
            update(ConnectionHealth)
            .where(ConnectionHealth.connection_id == inbound.connection_id)
            .values(checked_at=utcnow())
        )
    body = await gql(http, HEALTH, token=make_token(scopes="health:read"))
    view = body["data"]["externalHealth"]
    assert [(c["connectionId"], c["connection"]) for c in view["connections"]] == [
        (inbound.connection_id, None)
    ]
    assert [p["provider"] for p in view["providers"]] == [None]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    text = json.dumps(body)
    assert "acme-1" not in text and "inbound" not in text and "api.example.com" not in text
    # With the other areas' scopes the same view shows them.
    full = await gql(
        http, HEALTH, token=make_token(scopes="health:read connections:read providers:read")
    )
    assert "errors" not in full
    entry = full["data"]["externalHealth"]["connections"][0]["connection"]
    assert entry["configuration"] == {"account": "acme-1"}
    assert full["data"]["externalHealth"]["providers"][0]["provider"]["baseUrl"] == (
        "https://api.example.com"
    )


AUDIT = """
{ auditEvents(filter: {types: ["InboundWebhookReceived"]}) { nodes { type data } } }
"""


@pytest.mark.backends
async def test_audit_events_carry_webhook_payloads_only_with_webhooks_read(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    response = await inbound.post(BODY, inbound.signed(BODY, "msg_cross"))
    assert response.status_code == 200, response.text
    body = await gql(http, AUDIT, token=make_token(scopes="audit:read"))
    [event] = body["data"]["auditEvents"]["nodes"]
    assert "payload" not in event["data"]
    assert event["data"]["redacted"] == ["payload"]
    assert event["data"]["messageId"] == "msg_cross"
    assert "timesheet" not in json.dumps(body).replace('"eventType": "timesheet.approved"', "")
    both = await gql(http, AUDIT, token=make_token(scopes="audit:read webhooks:read"))
    [event] = both["data"]["auditEvents"]["nodes"]
    assert event["data"]["payload"] == json.loads(BODY)
    assert "redacted" not in event["data"]
