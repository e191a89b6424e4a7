"""capabilityMatrix: rows per provider and client, columns per capability, constant SQL."""

from __future__ import annotations

from typing import Any

import httpx

from studio_integrations.core.context import ActionContext, Actor
from studio_integrations.core.enums import ActorKind, ApiClientStatus
from studio_integrations.domain.providers import (
    ApiClientDefinition,
    ProviderDefinition,
    VerificationRequest,
    register_api_client,
    register_provider,
)
from studio_integrations.persistence.db import TenantScope
from studio_integrations.seed.catalogue import CatalogueLoad
from studio_integrations.services import Services
from tests.conftest import TokenFactory
from tests.providers.conftest import CAPABILITY_MATRIX, CATALOGUE_KEYS, PROVIDERS
from tests.support.graphql import gql


async def _add_providers(services: Services, tenant: str, start: int, stop: int) -> list[str]:
    """Tenant providers ``p{start}``..``p{stop - 1}``, each with one implemented client."""
    ctx = ActionContext(tenant, Actor("alice", ActorKind.USER, "Alice"), "0" * 31 + "1")
    ids = []
    async with services.db.transaction(TenantScope.of(tenant)) as session:
        for i in range(start, stop):
            provider = await register_provider(
                session,
                ctx,
                definition=ProviderDefinition(
                    key=f"p{i}",
                    name=f"Provider {i}",
                    category="CRM",
                    capabilities=[f"contacts{i}.read", "contacts.write"],
                    auth_modes=["API_KEY"],
                    base_url=f"https://p{i}.example.com",
                    verification=VerificationRequest("GET", "/me", 200),
                ),
            )
            await register_api_client(
                session,
                ctx,
                definition=ApiClientDefinition(
                    provider_id=provider.id,
                    assembly=f"Acme.P{i}.ApiClient",
                    version="1.0.0",
                    capabilities=[f"contacts{i}.read"],
                    status=ApiClientStatus.IMPLEMENTED,
                ),
            )
            ids.append(provider.id)
    return ids


async def _matrix(
    http: httpx.AsyncClient, token: str, ids: list[str] | None = None
) -> dict[str, Any]:
    body = await gql(http, CAPABILITY_MATRIX, {"ids": ids}, token=token)
    assert "errors" not in body, body
    matrix: dict[str, Any] = body["data"]["capabilityMatrix"]
    return matrix


async def test_rows_per_provider_and_client_columns_per_capability(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    await _add_providers(services, "globex", 0, 1)  # another tenant's: never shown
    token = make_token(scopes="providers:read")
    matrix = await _matrix(http, token)

    columns = matrix["capabilities"]
    assert columns == sorted(set(columns))
    assert {"employees.read", "messages.send", "invoices.sync", "campaigns.trigger"} <= set(columns)
    assert {row["provider"]["key"] for row in matrix["rows"]} == CATALOGUE_KEYS
    assert all(row["provider"]["global"] for row in matrix["rows"])
    for row in matrix["rows"]:
        assert [c["capability"] for c in row["cells"]] == columns
    deputy = [r for r in matrix["rows"] if r["provider"]["key"] == "deputy"]
    assert [r["label"] for r in deputy] == [
        "Deputy",
        "ConnectSoft.Deputy.ApiClient 2.0.0-rc.1",
        "ConnectSoft.Deputy.ApiClient 1.10.0",
        "ConnectSoft.Deputy.ApiClient 1.9.0",
    ]
    assert deputy[0]["apiClient"] is None
    assert all(r["apiClient"]["provider"]["key"] == "deputy" for r in deputy[1:])

    def supported(row: dict[str, Any]) -> set[str]:
        return {c["capability"] for c in row["cells"] if c["supported"]}

    assert supported(deputy[0]) >= {"employees.read", "timesheets.write", "rosters.write"}
    assert "messages.send" not in supported(deputy[0])
    assert supported(deputy[3]) == {"employees.read", "timesheets.read"}  # 1.9.0
    assert "rosters.write" in supported(deputy[1])  # 2.0.0-rc.1
    assert "rosters.write" not in supported(deputy[2])  # 1.10.0
    bill_client = next(r for r in matrix["rows"] if r["label"].startswith("ConnectSoft.Bill"))
    assert "invoices.sync" in supported(bill_client)
    assert "customers.read" not in supported(bill_client)


async def test_provider_ids_narrow_the_matrix_and_hide_what_is_not_visible(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    [theirs] = await _add_providers(services, "globex", 0, 1)
    [mine] = await _add_providers(services, "acme", 1, 2)
    token = make_token(tenant="acme", scopes="providers:read")
    listed = await gql(http, PROVIDERS, {"filter": {"search": "twilio"}}, token=token)
    twilio = listed["data"]["providers"]["nodes"][0]["id"]

    matrix = await _matrix(http, token, [twilio, mine, theirs, "garbage"])

    assert [r["label"] for r in matrix["rows"]] == [
        "Provider 1",
        "Acme.P1.ApiClient 1.0.0",
        "Twilio",
        "ConnectSoft.Twilio.ApiClient 3.2.0",
    ]
    assert "contacts0.read" not in matrix["capabilities"]
    assert "contacts1.read" in matrix["capabilities"]
    assert (await _matrix(http, token, []))["rows"] == []


async def test_statement_count_does_not_grow_with_the_number_of_providers(
    services: Services,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    catalogue: CatalogueLoad,
) -> None:
    token = make_token(tenant="acme", scopes="providers:read")
    db = services.db

    async def matrix_statements(expected_providers: int) -> int:
        with db.count_statements() as counter:
            matrix = await _matrix(http, token)
        providers = {row["provider"]["id"] for row in matrix["rows"]}
        assert len(providers) == expected_providers
        # Every nested field was answered (so the count covers them).
        assert all(row["provider"]["apiClients"] for row in matrix["rows"])
        return counter.count

    async def list_statements(first: int) -> int:
        with db.count_statements() as counter:
            body = await gql(http, PROVIDERS, {"first": first}, token=token)
        nodes = body["data"]["providers"]["nodes"]
        assert len(nodes) == first
        assert all(n["apiClients"] for n in nodes)
        return counter.count

    await _add_providers(services, "acme", 0, 5)
    at_5 = await matrix_statements(5 + len(CATALOGUE_KEYS))
    list_at_5 = await list_statements(5)
    await _add_providers(services, "acme", 5, 50)
    at_50 = await matrix_statements(50 + len(CATALOGUE_KEYS))
    list_at_50 = await list_statements(50)

    assert at_5 == at_50, (at_5, at_50)
    assert at_5 <= 2  # the providers, then all their clients
    assert list_at_5 == list_at_50, (list_at_5, list_at_50)
    assert list_at_5 <= 2  # one page of providers, one batch of clients
