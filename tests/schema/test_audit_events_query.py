"""auditEvents query and node(id:): filters, pagination, tenancy, guards, batching."""

from __future__ import annotations

import httpx

from studio_integrations.events.envelope import EventType
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.support.events import emit
from tests.support.graphql import error_codes, gql

AUDIT = """
query ($filter: AuditEventFilter, $first: Int!, $after: String) {
  auditEvents(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id type tenantId traceId actor { subject kind name } subject { type id } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


async def _ids(
    http: httpx.AsyncClient, token: str, first: int = 20, after: str | None = None, **flt: object
) -> tuple[list[str], dict[str, object]]:
    body = await gql(
        http, AUDIT, {"filter": flt or None, "first": first, "after": after}, token=token
    )
    assert "errors" not in body, body
    conn = body["data"]["auditEvents"]
    return [e["node"]["id"] for e in conn["edges"]], conn["pageInfo"]


async def test_filters_pagination_and_tenancy(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    s = services
    a1 = await emit(
        s, "acme", type=EventType.PROVIDER_REGISTERED, subject_id="prov_1", actor="alice"
    )
    a2 = await emit(s, "acme", type=EventType.CREDENTIAL_ROTATED, subject_id="cred_1", actor="bob")
    a3 = await emit(
        s, "acme", type=EventType.PROVIDER_REGISTERED, subject_id="prov_2", actor="alice"
    )
    g1 = await emit(
        s, "globex", type=EventType.PROVIDER_REGISTERED, subject_id="prov_1", actor="alice"
    )
    token = make_token(tenant="acme")

    ids, _ = await _ids(http, token)
    assert ids == [a3.id, a2.id, a1.id]  # newest first, never globex's
    assert g1.id not in ids
    assert (await _ids(http, token, types=["CredentialRotated"]))[0] == [a2.id]
    assert (await _ids(http, token, subjectId="prov_1"))[0] == [a1.id]
    assert (await _ids(http, token, actor="alice"))[0] == [a3.id, a1.id]
    assert (await _ids(http, token, **{"from": a2.occurred_at.isoformat()}))[0] == [a3.id, a2.id]
    assert (await _ids(http, token, to=a1.occurred_at.isoformat()))[0] == [a1.id]

    page1, info1 = await _ids(http, token, first=2)
    assert page1 == [a3.id, a2.id]
    assert info1["hasNextPage"] is True
    assert info1["hasPreviousPage"] is False
    page2, info2 = await _ids(http, token, first=2, after=str(info1["endCursor"]))
    assert page2 == [a1.id]
    assert info2["hasNextPage"] is False

    body = await gql(http, AUDIT, {"first": 1}, token=make_token(tenant="acme"))
    node = body["data"]["auditEvents"]["edges"][0]["node"]
    assert node["traceId"] == a3.trace_id
    assert node["actor"] == {"subject": "alice", "kind": "USER", "name": "Alice"}
    assert node["subject"] == {"type": "Provider", "id": "prov_2"}


async def test_bad_paging_and_filters_are_clear_errors(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token()
    assert error_codes(await gql(http, AUDIT, {"first": 101}, token=token)) == ["INVALID_PAGE"]
    assert error_codes(await gql(http, AUDIT, {"first": 5, "after": "bm9wZQ"}, token=token)) == [
        "INVALID_CURSOR"
    ]
    bad_type = await gql(http, AUDIT, {"first": 5, "filter": {"types": ["Nope"]}}, token=token)
    assert error_codes(bad_type) == ["UNKNOWN_EVENT_TYPE"]
    wrong_type = await gql(http, AUDIT, {"first": "many"}, token=token)
    assert wrong_type["errors"][0]["message"].startswith("Variable '$first' has invalid value")


async def test_audit_read_scope_is_required(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    await emit(services, "acme")
    body = await gql(
        http,
        "{ viewer { subject } auditEvents { edges { node { id } } } }",
        token=make_token(scopes="health:read"),
    )
    assert body["data"] == {"viewer": {"subject": "alice"}, "auditEvents": None}
    assert error_codes(body) == ["FORBIDDEN"]


NODE = "query ($id: ID!) { node(id: $id) { id ... on AuditEvent { type tenantId } } }"


async def test_node_resolves_only_visible_objects(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    own = await emit(services, "acme")
    theirs = await emit(services, "globex")
    acme = make_token(tenant="acme")
    assert (await gql(http, NODE, {"id": own.id}, token=acme))["data"]["node"] == {
        "id": own.id,
        "type": "ProviderRegistered",
        "tenantId": "acme",
    }
    for invisible in (
        theirs.id,
        "evt_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
        "nope_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
        "garbage",
        "",
    ):
        body = await gql(http, NODE, {"id": invisible}, token=acme)
        assert body == {"data": {"node": None}}, invisible
    forbidden = await gql(http, NODE, {"id": own.id}, token=make_token(scopes="health:read"))
    assert forbidden["data"]["node"] is None
    assert error_codes(forbidden) == ["FORBIDDEN"]


async def test_node_lookups_are_batched(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    ids = [(await emit(services, "acme", subject_id=f"prov_{i}")).id for i in range(12)]

    async def statements(n: int) -> int:
        document = "{ " + " ".join(f'n{i}: node(id: "{ids[i]}") {{ id }}' for i in range(n)) + " }"
        with services.db.count_statements() as counter:
            body = await gql(http, document, token=make_token())
        assert all(body["data"][f"n{i}"]["id"] == ids[i] for i in range(n))
        return sum(1 for s in counter.statements if s.lstrip().upper().startswith("SELECT"))

    assert await statements(2) == await statements(12) == 1


async def test_audit_page_size_does_not_change_statement_count(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    for i in range(30):
        await emit(services, "acme", subject_id=f"prov_{i}")

    async def statements(first: int) -> int:
        with services.db.count_statements() as counter:
            await _ids(http, make_token(), first=first)
        return counter.count

    five, thirty = await statements(5), await statements(30)
    assert five == thirty, (five, thirty)
