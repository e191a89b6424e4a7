"""auditEvents over a real WebSocket: tenant isolation, type filter, guards."""

from __future__ import annotations

import pytest
from gql.transport.exceptions import TransportQueryError

from studio_integrations.events.envelope import EventType
from tests.conftest import TokenFactory
from tests.support.events import emit
from tests.support.gqlws import subscribe
from tests.support.live import LiveServer

SUBSCRIPTION = """
subscription ($types: [String!]) {
  auditEvents(types: $types) { id type tenantId traceId actor { subject kind name } subject { type id } data }
}
"""


async def test_events_reach_their_tenant_and_never_another(
    server: LiveServer, make_token: TokenFactory
) -> None:
    live = server.services.live_subscribers
    async with (
        subscribe(
            server.ws_url, make_token(tenant="acme"), SUBSCRIPTION, live=live, tenant_id="acme"
        ) as acme,
        subscribe(
            server.ws_url, make_token(tenant="globex"), SUBSCRIPTION, live=live, tenant_id="globex"
        ) as globex,
    ):
        sent = await emit(server.services, "acme")
        got = (await acme.next())["auditEvents"]
        assert got["id"] == sent.id
        assert got["tenantId"] == "acme"
        assert got["traceId"] == sent.trace_id
        assert got["actor"] == {"subject": "alice", "kind": "USER", "name": "Alice"}
        assert got["subject"] == {"type": "Provider", "id": sent.subject.id}
        assert got["data"] == {"n": 1}
        # globex's stream is live (it gets its own event) but never saw acme's.
        own = await emit(server.services, "globex")
        assert (await globex.next())["auditEvents"]["id"] == own.id
        assert await globex.nothing_within(0.3)


async def test_type_filter(server: LiveServer, make_token: TokenFactory) -> None:
    variables = {"types": ["CredentialRotated"]}
    async with subscribe(
        server.ws_url,
        make_token(),
        SUBSCRIPTION,
        variables,
        live=server.services.live_subscribers,
        tenant_id="acme",
    ) as sub:
        await emit(server.services, "acme", type=EventType.PROVIDER_REGISTERED)
        wanted = await emit(server.services, "acme", type=EventType.CREDENTIAL_ROTATED)
        assert (await sub.next())["auditEvents"]["id"] == wanted.id


async def test_unknown_types_and_missing_scope_are_refused(
    server: LiveServer, make_token: TokenFactory
) -> None:
    unknown = {"types": ["NoSuchEvent"]}
    async with subscribe(server.ws_url, make_token(), SUBSCRIPTION, unknown) as sub:
        with pytest.raises(TransportQueryError, match="NoSuchEvent") as refused:
            await sub.next()
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "UNKNOWN_EVENT_TYPE"
    async with subscribe(server.ws_url, make_token(scopes="health:read"), SUBSCRIPTION) as sub:
        with pytest.raises(TransportQueryError) as forbidden:
            await sub.next()
    assert forbidden.value.errors is not None
    assert forbidden.value.errors[0]["extensions"]["code"] == "FORBIDDEN"
