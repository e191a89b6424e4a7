"""Bad input to establishConnection, updateConnection, testConnection and retireConnection:
each a precise userErrors entry, nothing written (no row, no event), and no outbound call.

Ids of another tenant (globex's provider, credential and connection) are answered exactly as
ids that do not exist (same field, code and message), and so are ids of another type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.core.ids import new_id
from studio_integrations.services import Services
from tests.conftest import TokenFactory, make_settings
from tests.connections.conftest import (
    ESTABLISH,
    NODE,
    REGISTER_PROVIDER,
    RETIRE,
    RETIRE_WITH_VERSION,
    TEST,
    UPDATE,
    Foreign,
    World,
    counts,
    establish_input,
    establish_offline,
    ok,
    register_fake_provider,
    register_secret_credential,
    stop_prober,
    user_errors,
)
from tests.fakes.provider import FakeProvider
from tests.support.backends import Backend
from tests.support.graphql import error_codes, gql
from tests.support.live import LiveServer, serve

Errors = list[tuple[str | None, str, str]]

# The prober would probe the connections these tests establish, racing the row counts.
pytestmark = pytest.mark.usefixtures("quiet")


class Refusals:
    """Sends a mutation that must be refused and proves it changed nothing."""

    def __init__(self, services: Services, http: httpx.AsyncClient, fake: FakeProvider) -> None:
        self.services, self.http, self.fake = services, http, fake

    async def __call__(
        self, document: str, variables: dict[str, Any], token: str, *, root: str
    ) -> Errors:
        before = await counts(self.services.db)
        calls = len(self.fake.requests)
        data = await ok(self.http, document, variables, token)
        payload = data[root]
        results = {k: v for k, v in payload.items() if k != "userErrors"}
        assert all(v is None for v in results.values()), payload
        assert payload["userErrors"], f"{root} accepted {variables}"
        assert await counts(self.services.db) == before, f"{root} wrote for {variables}"
        assert len(self.fake.requests) == calls, f"{root} called the provider for {variables}"
        return user_errors(payload)


@pytest.fixture
def refused(services: Services, http: httpx.AsyncClient, world: World) -> Refusals:
    return Refusals(services, http, world.fake)


def codes(errors: Errors) -> list[tuple[str | None, str]]:
    return [(field, code) for field, code, _ in errors]


# --- establishConnection -----------------------------------------------------------------


async def test_establish_unknown_foreign_and_mistyped_ids_look_alike(
    world: World, foreign: Foreign, refused: Refusals
) -> None:
    async def establish(**over: Any) -> Errors:
        doc = establish_input(world.provider_id, world.credential_id, **over)
        return await refused(ESTABLISH, {"input": doc}, world.token, root="establishConnection")

    unknown = await establish(providerId=new_id("Provider"))
    assert unknown == [("input.providerId", "PROVIDER_NOT_FOUND", "no such provider")]
    assert await establish(providerId=foreign.provider_id) == unknown
    assert await establish(providerId=world.credential_id) == unknown  # a credential's id
    assert await establish(providerId="prov_nope") == unknown

    unknown = await establish(credentialId=new_id("Credential"))
    assert unknown == [("input.credentialId", "CREDENTIAL_NOT_FOUND", "no such credential")]
    assert await establish(credentialId=foreign.credential_id) == unknown
    assert await establish(credentialId=world.provider_id) == unknown


async def test_establish_auth_mode_checks(world: World, refused: Refusals) -> None:
    async def establish(**over: Any) -> Errors:
        doc = establish_input(world.provider_id, world.credential_id, **over)
        return await refused(ESTABLISH, {"input": doc}, world.token, root="establishConnection")

    # The provider offers API_KEY and BEARER_TOKEN; the credential is an API_KEY one.
    lacking = await establish(authMode="BASIC")
    assert codes(lacking) == [
        ("input.authMode", "UNSUPPORTED_AUTH_MODE"),
        ("input.credentialId", "AUTH_MODE_MISMATCH"),
    ]
    assert "API_KEY, BEARER_TOKEN" in lacking[0][2]
    mismatch = await establish(authMode="BEARER_TOKEN")
    assert codes(mismatch) == [("input.credentialId", "AUTH_MODE_MISMATCH")]
    assert "API_KEY" in mismatch[0][2] and "BEARER_TOKEN" in mismatch[0][2]


async def test_establish_configuration_checks(world: World, refused: Refusals) -> None:
    async def establish(configuration: Any) -> Errors:
        doc = establish_input(world.provider_id, world.credential_id, configuration=configuration)
        return await refused(ESTABLISH, {"input": doc}, world.token, root="establishConnection")

    assert codes(await establish({"account": "ACME 1"})) == [
        ("input.configuration.account", "INVALID_CONFIGURATION")
    ]
    # Every violation at its own path, in path order.
    assert codes(await establish({"account": "Bad!", "pageSize": 0})) == [
        ("input.configuration.account", "INVALID_CONFIGURATION"),
        ("input.configuration.pageSize", "INVALID_CONFIGURATION"),
    ]
    missing = await establish({})
    assert codes(missing) == [("input.configuration", "INVALID_CONFIGURATION")]
    assert "'account' is a required property" in missing[0][2]
    assert codes(await establish({"account": "a", "extra": 1})) == [
        ("input.configuration", "INVALID_CONFIGURATION")
    ]
    for not_an_object in ([{"account": "a"}], "account=a", 7, True):
        assert await establish(not_an_object) == [
            ("input.configuration", "INVALID_CONFIGURATION", "must be a JSON object")
        ]
    deep: dict[str, Any] = {"account": "a"}
    for _ in range(20):
        deep = {"n": deep}
    assert codes(await establish(deep)) == [("input.configuration", "TOO_LARGE")]
    large = {"account": "a", "note": "x" * (17 * 1024)}
    assert codes(await establish(large)) == [("input.configuration", "TOO_LARGE")]


async def test_establish_signing_secret_ref_checks(
    services: Services, world: World, refused: Refusals
) -> None:
    vault = services.vault
    await vault.set_secret("globex-inbound", "whsec-globex", tags={"studio-tenant": "globex"})

    async def establish(ref: str) -> Errors:
        doc = establish_input(world.provider_id, world.credential_id, inboundSigningSecretRef=ref)
        return await refused(ESTABLISH, {"input": doc}, world.token, root="establishConnection")

    field = "input.inboundSigningSecretRef"
    missing = await establish("local://vault/secrets/no-such-secret")
    assert codes(missing) == [(field, "SECRET_NOT_FOUND")]
    foreign = await establish("local://vault/secrets/globex-inbound")
    assert codes(foreign) == [(field, "SECRET_NOT_FOUND")]
    assert "globex" not in foreign[0][2].replace("globex-inbound", "")
    assert codes(await establish("https://elsewhere.vault.azure.net/secrets/inbound")) == [
        (field, "VAULT_MISMATCH")
    ]
    assert codes(await establish("not a reference"))[0][0] == field


async def test_establish_names_and_duplicates(
    http: httpx.AsyncClient, world: World, refused: Refusals
) -> None:
    async def establish(**over: Any) -> Errors:
        doc = establish_input(world.provider_id, world.credential_id, **over)
        return await refused(ESTABLISH, {"input": doc}, world.token, root="establishConnection")

    assert codes(await establish(name="   ")) == [("input.name", "REQUIRED")]
    assert codes(await establish(name="n" * 201)) == [("input.name", "TOO_LONG")]
    assert codes(await establish(projectId="")) == [("input.projectId", "REQUIRED")]
    assert codes(await establish(projectId="-payroll")) == [
        ("input.projectId", "INVALID_PROJECT_ID")
    ]
    await establish_offline(http, world)
    assert codes(await establish()) == [("input.name", "DUPLICATE_NAME")]
    assert codes(await establish(name="  hr PRODUCTION ")) == [("input.name", "DUPLICATE_NAME")]
    # Several problems at once are reported together.
    assert codes(await establish(name="", authMode="BEARER_TOKEN", configuration={})) == [
        ("input.name", "REQUIRED"),
        ("input.credentialId", "AUTH_MODE_MISMATCH"),
        ("input.configuration", "INVALID_CONFIGURATION"),
    ]


# --- Egress: loopback and private targets refused -----------------------------------------


@pytest.fixture
async def strict(backend: Backend, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """A server with the production egress policy (STUDIO_ALLOW_LOOPBACK_TARGETS off)."""
    settings = make_settings(backend, tmp_path / "strict", allow_loopback_targets=False)
    async with serve(create_app(settings)) as live:
        await stop_prober(live.services)
        yield live


HOST_SCHEMA = {
    "type": "object",
    "properties": {"host": {"type": "string"}, "account": {"type": "string"}},
    "required": ["host", "account"],
}


async def test_egress_refused_without_a_request(
    strict: LiveServer,
    server: LiveServer,
    make_token: TokenFactory,
    fake: FakeProvider,
) -> None:
    token = make_token(tenant="acme")
    async with (
        httpx.AsyncClient(base_url=strict.url, timeout=10) as http,
        httpx.AsyncClient(base_url=server.url, timeout=10) as permissive,
    ):
        refused = Refusals(strict.services, http, fake)
        credential_id = await register_secret_credential(http, token, strict.services.vault)
        # The strict server refuses these base URLs when they are saved (registerProvider);
        # providers saved under a permissive policy are refused again at establishment.
        plain_http = await register_fake_provider(permissive, token, fake.base_url)
        private = await gql(
            http,
            REGISTER_PROVIDER,
            {
                "input": {
                    "key": "private-hr",
                    "name": "Private HR",
                    "category": "HR",
                    "capabilities": ["employees.read"],
                    "authModes": ["API_KEY"],
                    "baseUrl": "https://10.20.30.40:8443",
                    "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
                }
            },
            token=token,
        )
        assert [e["code"] for e in private["data"]["registerProvider"]["userErrors"]] == [
            "EGRESS_REFUSED"
        ]
        templated = await register_fake_provider(
            http, token, "https://{host}", key="templated-hr", configurationSchema=HOST_SCHEMA
        )

        async def establish(provider_id: str, configuration: dict[str, Any]) -> Errors:
            doc = establish_input(provider_id, credential_id, configuration=configuration)
            return await refused(ESTABLISH, {"input": doc}, token, root="establishConnection")

        for provider_id, configuration in [
            (plain_http, {"account": "acme-1"}),
            (templated, {"host": "127.0.0.1", "account": "a"}),
            (templated, {"host": "192.168.1.20", "account": "a"}),
            (templated, {"host": "localhost", "account": "a"}),
            (templated, {"host": "169.254.169.254", "account": "a"}),
        ]:
            errors = await establish(provider_id, configuration)
            assert [code for _, code in codes(errors)] == ["EGRESS_REFUSED"], (
                configuration,
                errors,
            )
            assert errors[0][0] is not None
            assert errors[0][0].startswith("input.configuration"), errors

        # A public name passes the (network-free) check; changing it to a private address
        # through updateConnection is refused the same way.
        data = await ok(
            http,
            ESTABLISH,
            {
                "input": establish_input(
                    templated,
                    credential_id,
                    configuration={"host": "api.example.com", "account": "a"},
                    runTest=False,
                )
            },
            token,
        )
        assert data["establishConnection"]["userErrors"] == [], data
        connection_id = data["establishConnection"]["connection"]["id"]
        errors = await refused(
            UPDATE,
            {"input": {"id": connection_id, "configuration": {"host": "10.0.0.1", "account": "a"}}},
            token,
            root="updateConnection",
        )
        assert [code for _, code in codes(errors)] == ["EGRESS_REFUSED"]
    assert fake.requests == []


# --- updateConnection ----------------------------------------------------------------------


async def test_update_refusals(
    services: Services,
    http: httpx.AsyncClient,
    world: World,
    foreign: Foreign,
    refused: Refusals,
) -> None:
    connection = await establish_offline(http, world)
    other = await establish_offline(http, world, name="HR staging")
    await services.vault.set_secret(
        "globex-inbound", "whsec-globex", tags={"studio-tenant": "globex"}
    )

    async def update(**fields: Any) -> Errors:
        fields.setdefault("id", connection["id"])
        return await refused(UPDATE, {"input": fields}, world.token, root="updateConnection")

    unknown = await update(id=new_id("IntegrationConnection"), name="x")
    assert unknown == [("input.id", "CONNECTION_NOT_FOUND", "no such connection")]
    assert await update(id=foreign.connection_id, name="x") == unknown
    assert await update(id=world.credential_id, name="x") == unknown

    assert codes(await update(name="")) == [("input.name", "REQUIRED")]
    assert codes(await update(name=" ")) == [("input.name", "REQUIRED")]
    assert codes(await update(name=other["name"].upper())) == [("input.name", "DUPLICATE_NAME")]
    assert codes(await update(configuration={"account": "NO!"})) == [
        ("input.configuration.account", "INVALID_CONFIGURATION")
    ]
    assert codes(await update(configuration=["account"])) == [
        ("input.configuration", "INVALID_CONFIGURATION")
    ]
    assert codes(await update(configuration={"account": "a", "x": "y" * 20000})) == [
        ("input.configuration", "TOO_LARGE")
    ]
    field = "input.inboundSigningSecretRef"
    assert codes(await update(inboundSigningSecretRef="local://vault/secrets/missing")) == [
        (field, "SECRET_NOT_FOUND")
    ]
    assert codes(await update(inboundSigningSecretRef="local://vault/secrets/globex-inbound")) == [
        (field, "SECRET_NOT_FOUND")
    ]
    assert codes(
        await update(inboundSigningSecretRef="https://x.vault.azure.net/secrets/inbound")
    ) == [(field, "VAULT_MISMATCH")]
    assert codes(await update(name="Renamed", version=connection["version"] + 1)) == [
        ("input.version", "STALE_VERSION")
    ]
    nothing = [("input", "NOTHING_TO_UPDATE")]
    assert codes(await update()) == nothing
    assert codes(await update(name=connection["name"])) == nothing
    assert codes(await update(configuration=connection["configuration"])) == nothing
    assert codes(await update(inboundSigningSecretRef=None)) == nothing  # already unset

    # The connection is as it was.
    data = await ok(http, NODE, {"id": connection["id"]}, world.token)
    assert data["node"]["version"] == connection["version"]
    assert data["node"]["name"] == connection["name"]
    assert data["node"]["configuration"] == connection["configuration"]


# --- testConnection and retireConnection --------------------------------------------------


async def test_test_and_retire_refusals(
    http: httpx.AsyncClient, world: World, foreign: Foreign, refused: Refusals
) -> None:
    connection = await establish_offline(http, world)

    async def test(id_: str) -> Errors:
        return await refused(TEST, {"id": id_}, world.token, root="testConnection")

    unknown = await test(new_id("IntegrationConnection"))
    assert unknown == [("input.id", "CONNECTION_NOT_FOUND", "no such connection")]
    assert await test(foreign.connection_id) == unknown
    assert await test(world.provider_id) == unknown
    assert await test("") == unknown

    async def retire(**fields: Any) -> Errors:
        fields.setdefault("id", connection["id"])
        fields.setdefault("confirmName", connection["name"])
        return await refused(
            RETIRE_WITH_VERSION, {"input": fields}, world.token, root="retireConnection"
        )

    unknown = await retire(id=new_id("IntegrationConnection"))
    assert unknown == [("input.id", "CONNECTION_NOT_FOUND", "no such connection")]
    assert await retire(id=foreign.connection_id) == unknown
    assert await retire(id=foreign.connection_id, confirmName="HR production") == unknown
    assert await retire(id=world.credential_id) == unknown
    for wrong in ("", "HR prod", "hr production", "HR production!"):
        assert codes(await retire(confirmName=wrong)) == [
            ("input.confirmName", "CONFIRMATION_MISMATCH")
        ]
    assert codes(await retire(version=connection["version"] + 1)) == [
        ("input.version", "STALE_VERSION")
    ]

    # Globex's connection is untouched and still ACTIVE for globex.
    data = await ok(http, NODE, {"id": foreign.connection_id}, foreign.token)
    assert data["node"]["status"] == "ACTIVE"
    # Acme's own connection retires with the right name.
    data = await ok(
        http, RETIRE, {"id": connection["id"], "confirmName": connection["name"]}, world.token
    )
    assert data["retireConnection"]["userErrors"] == []


# --- Authorization -------------------------------------------------------------------------


async def test_mutations_need_connections_write(
    services: Services, http: httpx.AsyncClient, make_token: TokenFactory, world: World
) -> None:
    connection = await establish_offline(http, world)
    reader = make_token(scopes="connections:read credentials:read providers:read audit:read")
    before = await counts(services.db)
    calls = len(world.fake.requests)
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        (
            "establishConnection",
            ESTABLISH,
            {"input": establish_input(world.provider_id, world.credential_id, name="other")},
        ),
        ("updateConnection", UPDATE, {"input": {"id": connection["id"], "name": "Renamed"}}),
        ("testConnection", TEST, {"id": connection["id"]}),
        ("retireConnection", RETIRE, {"id": connection["id"], "confirmName": connection["name"]}),
    ]
    for root, document, variables in attempts:
        body = await gql(http, document, variables, token=reader)
        assert body["data"] == {root: None}, body
        assert error_codes(body) == ["FORBIDDEN"], body
    assert await counts(services.db) == before
    assert len(world.fake.requests) == calls
    data = await ok(http, NODE, {"id": connection["id"]}, reader)
    assert (data["node"]["name"], data["node"]["status"]) == (connection["name"], "ACTIVE")
    assert data["node"]["viewerCan"] == {"test": False, "update": False, "retire": False}


async def test_credential_field_needs_credentials_read(
    http: httpx.AsyncClient, make_token: TokenFactory, world: World
) -> None:
    connection = await establish_offline(http, world)
    token = make_token(scopes="connections:read providers:read")
    body = await gql(http, NODE, {"id": connection["id"]}, token=token)
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["node", "credential"]
    node = body["data"]["node"]
    assert node["credential"] is None
    assert (node["id"], node["name"], node["status"]) == (
        connection["id"],
        "HR production",
        "ACTIVE",
    )
    assert node["provider"]["id"] == world.provider_id
    assert node["configuration"] == {"account": "acme-1"}

    listing = await gql(
        http,
        "{ integrationConnections { nodes { id name credential { id } } } }",
        token=token,
    )
    assert error_codes(listing) == ["FORBIDDEN"], listing
    assert listing["data"]["integrationConnections"]["nodes"] == [
        {"id": connection["id"], "name": "HR production", "credential": None}
    ]

    body = await gql(http, NODE, {"id": connection["id"]}, token=world.token)
    assert "errors" not in body
    assert body["data"]["node"]["credential"]["id"] == world.credential_id
