"""Issue #2's end-to-end promise, through a real governed action over HTTP:

the event it emits reaches its tenant's auditEvents subscriber over a real WebSocket and
never another tenant's, and the auditEvents query shows it with the actor and the trace id
of the `traceparent` header the caller sent.
"""

from __future__ import annotations

import httpx

from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.support.gqlws import subscribe
from tests.support.graphql import gql
from tests.support.live import LiveServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

REGISTER = """
mutation ($input: RegisterProviderInput!) {
  registerProvider(input: $input) { provider { id } userErrors { field code message } }
}
"""
SUBSCRIPTION = "subscription { auditEvents { id type traceId actor { subject kind name } subject { type id } } }"
AUDIT = "query ($id: ID!) { auditEvents(filter: {subjectId: $id}) { edges { node { type traceId actor { subject kind name } } } } }"


def _provider_input(key: str) -> dict[str, object]:
    return {
        "key": key,
        "name": "Acme HR",
        "category": "HR",
        "capabilities": ["employees.read"],
        "authModes": ["API_KEY"],
        "baseUrl": "https://hr.acme.example",
        "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
    }


async def test_a_mutations_event_is_live_for_its_tenant_only_and_audited_with_its_trace(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    live = server.services.live_subscribers
    alice = make_token(tenant="acme", subject="alice", name="Alice")
    async with (
        subscribe(server.ws_url, alice, SUBSCRIPTION, live=live, tenant_id="acme") as acme,
        subscribe(
            server.ws_url, make_token(tenant="globex"), SUBSCRIPTION, live=live, tenant_id="globex"
        ) as globex,
    ):
        body = await gql(
            http,
            REGISTER,
            {"input": _provider_input("acme-hr")},
            token=alice,
            headers={"traceparent": TRACEPARENT},
        )
        assert body["data"]["registerProvider"]["userErrors"] == []
        provider_id = body["data"]["registerProvider"]["provider"]["id"]

        event = (await acme.next())["auditEvents"]
        assert event["type"] == "ProviderRegistered"
        assert event["traceId"] == TRACE_ID
        assert event["actor"] == {"subject": "alice", "kind": "USER", "name": "Alice"}
        assert event["subject"] == {"type": "Provider", "id": provider_id}
        assert await globex.nothing_within(0.5)

    audit = await gql(http, AUDIT, {"id": provider_id}, token=alice)
    (edge,) = audit["data"]["auditEvents"]["edges"]
    assert edge["node"] == {
        "type": "ProviderRegistered",
        "traceId": TRACE_ID,
        "actor": {"subject": "alice", "kind": "USER", "name": "Alice"},
    }
    hidden = await gql(http, AUDIT, {"id": provider_id}, token=make_token(tenant="globex"))
    assert hidden["data"]["auditEvents"]["edges"] == []


async def test_without_traceparent_each_request_gets_a_fresh_trace(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    ids = []
    for key in ("one", "two"):
        body = await gql(
            http,
            REGISTER,
            {"input": _provider_input(key)},
            token=token,
            headers={"traceparent": "garbage"},
        )
        ids.append(body["data"]["registerProvider"]["provider"]["id"])
    traces = set()
    for provider_id in ids:
        audit = await gql(http, AUDIT, {"id": provider_id}, token=token)
        traces.add(audit["data"]["auditEvents"]["edges"][0]["node"]["traceId"])
    assert len(traces) == 2
    assert all(len(t) == 32 and int(t, 16) for t in traces)
