"""registerCredential over HTTP with Azure Key Vault as the store (the real SDK client against
the stand-in): Azure-shaped references, tag and version rules, and no value ever fetched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from azure.keyvault.secrets._shared import http_challenge_cache

from studio_integrations.services import Services
from studio_integrations.vault.azure import AzureKeyVaultStore
from tests.conftest import TokenFactory
from tests.credentials.conftest import REGISTER_CREDENTIAL, credential_input
from tests.fakes.keyvault import KeyVaultStandIn, StaticTokenCredential
from tests.support.graphql import gql
from tests.vault.test_azure_store import open_store

NAME = "deputy-api-key"


@pytest.fixture
async def standin(tmp_path: Path) -> AsyncIterator[KeyVaultStandIn]:
    http_challenge_cache.clear()
    async with KeyVaultStandIn().running(tmp_path / "tls") as running:
        yield running
    http_challenge_cache.clear()


@pytest.fixture
async def azure_store(
    services: Services, standin: KeyVaultStandIn, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AzureKeyVaultStore]:
    """The server's secret store, swapped for the Key Vault store for this test."""
    store = open_store(standin, StaticTokenCredential())
    monkeypatch.setattr(services, "vault", store)
    yield store
    await store.close()


async def test_register_against_key_vault(
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    standin: KeyVaultStandIn,
    azure_store: AzureKeyVaultStore,
) -> None:
    acme = {"studio-tenant": "acme"}
    first = await azure_store.set_secret(NAME, "value-one", tags=acme)
    standin.advance(1)
    second = await azure_store.set_secret(NAME, "value-two", tags=acme)
    await azure_store.update_properties(NAME, second.version, enabled=False)
    await azure_store.set_secret("globex-key", "value-three", tags={"studio-tenant": "globex"})
    standin.requests.clear()
    token = make_token(tenant="acme")
    reference = f"{azure_store.vault_url}/secrets/{NAME}"

    async def register(ref: str) -> dict[str, object]:
        body = await gql(
            http, REGISTER_CREDENTIAL, {"input": credential_input(keyVaultRef=ref)}, token=token
        )
        assert "errors" not in body, body
        payload: dict[str, object] = body["data"]["registerCredential"]
        return payload

    def codes(payload: dict[str, object]) -> list[object]:
        errors = payload["userErrors"]
        assert isinstance(errors, list)
        return [e["code"] for e in errors]

    assert codes(await register(f"{azure_store.vault_url}/secrets/globex-key")) == [
        "SECRET_NOT_FOUND"
    ]
    assert codes(await register(f"{azure_store.vault_url}/secrets/missing")) == ["SECRET_NOT_FOUND"]
    assert codes(await register(f"local://vault/secrets/{NAME}")) == ["VAULT_MISMATCH"]
    assert codes(await register(f"{reference}/{second.version}")) == ["SECRET_VERSION_DISABLED"]

    payload = await register(reference)
    assert payload["userErrors"] == []
    credential = payload["credential"]
    assert isinstance(credential, dict)
    assert credential["keyVaultRef"] == reference
    assert credential["currentVersion"] == first.version  # the disabled newest is skipped

    # Only version listings went to Key Vault: no GET of a secret (which returns its value).
    assert standin.requests
    assert all(r.method == "GET" and r.path.endswith("/versions") for r in standin.requests), [
        (r.method, r.path) for r in standin.requests
    ]
