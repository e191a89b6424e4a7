"""integrationConnections: filters, orderings with cursor pagination, bad cursors, tenant
isolation of the list and of node(id); updateConnection's happy path and its event."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from studio_integrations.core.enums import ConnectionStatus
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationConnection
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.connections.conftest import (
    AUDIT,
    NODE,
    RETIRE,
    UPDATE,
    Foreign,
    World,
    establish_offline,
    ok,
    register_fake_provider,
)
from tests.support.graphql import error_codes, gql

SMS_SCHEMA = {
    "type": "object",
    "properties": {"account": {"type": "string"}, "sender": {"type": "string"}},
    "required": ["account"],
}

# name -> (provider, project, final status); created in this order.
PLAN: list[tuple[str, str, str, str]] = [
    ("alpha", "hr", "payroll", "ACTIVE"),
    ("bravo", "hr", "payroll", "RETIRED"),
    ("charlie", "sms", "messaging", "ACTIVE"),
    ("delta", "sms", "messaging", "DEGRADED"),
    ("echo", "hr", "staffing", "ACTIVE"),
    ("foxtrot", "sms", "staffing", "ACTIVE"),
    ("golf", "hr", "payroll", "ACTIVE"),
]
CREATED = [name for name, *_ in PLAN]

# The prober would probe the fleet and move statuses and versions under the assertions.
pytestmark = pytest.mark.usefixtures("quiet")

# Names only: a cheap query (the full CONNECTIONS document costs enough to count against the
# expensive-query rate limit, and these tests page a lot).
NAMES = """
query ($filter: IntegrationConnectionFilter, $orderBy: IntegrationConnectionOrder,
       $first: Int! = 100, $after: String) {
  integrationConnections(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
    nodes { id name }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@pytest.fixture
async def fleet(
    services: Services, http: httpx.AsyncClient, world: World, foreign: Foreign
) -> dict[str, Any]:
    """Seven acme connections across two providers, three projects and three statuses (and
    globex's one, which acme must never see)."""
    sms = await register_fake_provider(
        http,
        world.token,
        world.fake.base_url,
        key="fake-sms",
        name="Fake SMS",
        category="SMS",
        configurationSchema=SMS_SCHEMA,
    )
    providers = {"hr": world.provider_id, "sms": sms}
    ids: dict[str, str] = {}
    for name, provider, project, status in PLAN:
        connection = await establish_offline(
            http, world, providerId=providers[provider], name=name, projectId=project
        )
        ids[name] = connection["id"]
        if status == "RETIRED":
            data = await ok(
                http, RETIRE, {"id": connection["id"], "confirmName": name}, world.token
            )
            assert data["retireConnection"]["userErrors"] == []
    async with services.db.transaction(TenantScope.of("acme")) as session:
        row = await session.get(IntegrationConnection, ids["delta"])
        assert row is not None
        row.status = ConnectionStatus.DEGRADED  # as the health prober would leave it
    return {"ids": ids, "providers": providers}


async def names(
    http: httpx.AsyncClient, token: str, flt: dict[str, Any] | None = None, **variables: Any
) -> list[str]:
    data = await ok(http, NAMES, {"filter": flt, **variables}, token)
    return [n["name"] for n in data["integrationConnections"]["nodes"]]


async def test_filters(http: httpx.AsyncClient, world: World, fleet: dict[str, Any]) -> None:
    token = world.token
    providers = fleet["providers"]
    newest_first = list(reversed(CREATED))

    def expect(*wanted: str) -> list[str]:
        return [n for n in newest_first if n in wanted]

    assert await names(http, token) == newest_first  # CREATED_AT DESC by default
    assert await names(http, token, {"providerCategory": "HR"}) == expect(
        "alpha", "bravo", "echo", "golf"
    )
    assert await names(http, token, {"providerCategory": "SMS"}) == expect(
        "charlie", "delta", "foxtrot"
    )
    assert await names(http, token, {"providerCategory": "PAYMENTS"}) == []
    assert await names(http, token, {"status": "ACTIVE"}) == expect(
        "alpha", "charlie", "echo", "foxtrot", "golf"
    )
    assert await names(http, token, {"status": "RETIRED"}) == ["bravo"]
    assert await names(http, token, {"status": "DEGRADED"}) == ["delta"]
    assert await names(http, token, {"projectId": "payroll"}) == expect("alpha", "bravo", "golf")
    assert await names(http, token, {"projectId": "PAYROLL"}) == []  # ids are exact
    assert await names(http, token, {"providerId": providers["sms"]}) == expect(
        "charlie", "delta", "foxtrot"
    )
    # Search: case-insensitive, in the name or the project id, wildcards taken literally.
    assert await names(http, token, {"search": "HA"}) == expect("alpha", "charlie")
    assert await names(http, token, {"search": " Staff"}) == expect("echo", "foxtrot")
    assert await names(http, token, {"search": "%"}) == []
    assert await names(http, token, {"search": "_"}) == []
    assert await names(
        http,
        token,
        {"providerCategory": "SMS", "status": "ACTIVE", "projectId": "staffing", "search": "fox"},
    ) == ["foxtrot"]
    assert await names(http, token, {"providerId": providers["sms"], "projectId": "payroll"}) == []

    too_long = await gql(http, NAMES, {"filter": {"search": "x" * 201}}, token=token)
    assert error_codes(too_long) == ["TOO_LONG"]


ORDERS: list[tuple[str, str, list[str]]] = [
    ("CREATED_AT", "DESC", list(reversed(CREATED))),
    ("CREATED_AT", "ASC", CREATED),
    ("NAME", "ASC", sorted(CREATED)),
    ("NAME", "DESC", sorted(CREATED, reverse=True)),
    # Status text order, then creation (the id) in the same direction.
    ("STATUS", "ASC", ["alpha", "charlie", "echo", "foxtrot", "golf", "delta", "bravo"]),
    ("STATUS", "DESC", ["bravo", "delta", "golf", "foxtrot", "echo", "charlie", "alpha"]),
]


async def test_orderings_paginate_without_gaps_or_duplicates(
    http: httpx.AsyncClient, world: World, fleet: dict[str, Any]
) -> None:
    for field, direction, expected in ORDERS:
        order = {"field": field, "direction": direction}
        assert await names(http, world.token, orderBy=order) == expected, order
        for size in (1, 2, 3):
            seen: list[str] = []
            after = None
            for _ in range(len(CREATED) + 1):
                data = await ok(
                    http,
                    NAMES,
                    {"orderBy": order, "first": size, "after": after},
                    world.token,
                )
                page = data["integrationConnections"]
                seen.extend(n["name"] for n in page["nodes"])
                assert len(page["nodes"]) <= size
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
            assert seen == expected, (order, size)

    # A filtered list paginates the same way.
    order = {"field": "NAME", "direction": "ASC"}
    first = await ok(
        http,
        NAMES,
        {"filter": {"status": "ACTIVE"}, "orderBy": order, "first": 3},
        world.token,
    )
    page = first["integrationConnections"]
    assert [n["name"] for n in page["nodes"]] == ["alpha", "charlie", "echo"]
    second = await ok(
        http,
        NAMES,
        {
            "filter": {"status": "ACTIVE"},
            "orderBy": order,
            "first": 3,
            "after": page["pageInfo"]["endCursor"],
        },
        world.token,
    )
    assert [n["name"] for n in second["integrationConnections"]["nodes"]] == ["foxtrot", "golf"]
    assert second["integrationConnections"]["pageInfo"]["hasNextPage"] is False


async def test_bad_cursors_and_page_sizes(
    http: httpx.AsyncClient, world: World, fleet: dict[str, Any]
) -> None:
    by_name = {"field": "NAME", "direction": "ASC"}
    name_cursor = (await ok(http, NAMES, {"orderBy": by_name, "first": 1}, world.token))[
        "integrationConnections"
    ]["pageInfo"]["endCursor"]
    created_cursor = (await ok(http, NAMES, {"first": 1}, world.token))["integrationConnections"][
        "pageInfo"
    ]["endCursor"]

    async def codes(**variables: Any) -> list[str]:
        return error_codes(await gql(http, NAMES, variables, token=world.token))

    assert await codes(after="bm9wZQ") == ["INVALID_CURSOR"]
    assert await codes(after="not base64 at all!") == ["INVALID_CURSOR"]
    assert await codes(orderBy=by_name, after="bm9wZQ") == ["INVALID_CURSOR"]
    # A cursor of one ordering is refused by another.
    assert await codes(after=name_cursor) == ["INVALID_CURSOR"]
    assert await codes(orderBy=by_name, after=created_cursor) == ["INVALID_CURSOR"]
    assert await codes(first=101) == ["INVALID_PAGE"]
    assert await codes(first=-1) == ["INVALID_PAGE"]


async def test_tenant_isolation_of_list_and_node(
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    world: World,
    foreign: Foreign,
    fleet: dict[str, Any],
) -> None:
    acme = await ok(http, NAMES, {}, world.token)
    acme_ids = {n["id"] for n in acme["integrationConnections"]["nodes"]}
    assert acme_ids == set(fleet["ids"].values())
    assert foreign.connection_id not in acme_ids
    # Globex's provider id as a filter finds nothing for acme.
    assert await names(http, world.token, {"providerId": foreign.provider_id}) == []

    globex = await ok(http, NAMES, {}, foreign.token)
    assert [n["id"] for n in globex["integrationConnections"]["nodes"]] == [foreign.connection_id]

    body = await gql(http, NODE, {"id": foreign.connection_id}, token=world.token)
    assert body == {"data": {"node": None}}
    body = await gql(http, NODE, {"id": fleet["ids"]["alpha"]}, token=foreign.token)
    assert body == {"data": {"node": None}}
    # A third tenant sees nothing at all.
    assert await names(http, make_token(tenant="initech")) == []


async def test_update_happy_path(services: Services, http: httpx.AsyncClient, world: World) -> None:
    vault = services.vault
    await vault.set_secret("hr-inbound", "whsec-test-value", tags={"studio-tenant": "acme"})
    inbound = f"{vault.vault_url}/secrets/hr-inbound"
    connection = await establish_offline(http, world)
    calls = len(world.fake.requests)

    async def update(**fields: Any) -> dict[str, Any]:
        data = await ok(http, UPDATE, {"input": {"id": connection["id"], **fields}}, world.token)
        payload = data["updateConnection"]
        assert payload["userErrors"] == [], payload
        updated: dict[str, Any] = payload["connection"]
        return updated

    first = await update(
        name="HR production (AU)",
        configuration={"account": "acme-au", "pageSize": 50},
        version=connection["version"],
    )
    assert first["name"] == "HR production (AU)"
    assert first["configuration"] == {"account": "acme-au", "pageSize": 50}
    assert first["version"] == connection["version"] + 1
    assert first["status"] == "ACTIVE"

    second = await update(inboundSigningSecretRef=f"  {inbound} ")
    assert second["inboundSigningSecretRef"] == inbound
    assert second["name"] == "HR production (AU)"  # untouched fields stay

    third = await update(inboundSigningSecretRef=None)
    assert third["inboundSigningSecretRef"] is None
    assert third["version"] == connection["version"] + 3

    # The old name is free again for a new connection in the project.
    await establish_offline(http, world, name="HR production")
    # No provider call was needed for any of this.
    assert len(world.fake.requests) == calls

    data = await ok(http, AUDIT, {"subjectId": connection["id"]}, world.token)
    events = data["auditEvents"]["nodes"]
    updates = [e for e in events if e["type"] == "IntegrationConnectionUpdated"]
    assert [e["data"]["changed"] for e in updates] == [
        ["inboundSigningSecretRef"],
        ["inboundSigningSecretRef"],
        ["configuration", "name"],
    ]
    assert updates[0]["data"]["connection"]["inboundSigningSecretRef"] is None
    assert updates[1]["data"]["connection"]["inboundSigningSecretRef"] == inbound
    assert updates[2]["data"]["connection"]["name"] == "HR production (AU)"
    assert "whsec-test-value" not in str(events)
    assert events[-1]["type"] == "IntegrationConnectionEstablished"

    data = await ok(http, NODE, {"id": connection["id"]}, world.token)
    assert data["node"]["configuration"] == {"account": "acme-au", "pageSize": 50}
