"""The wizard path with ``STUDIO_SECRET_STORE=azure``: the server is built from settings that
name Azure Key Vault, so its store is the ``AzureKeyVaultStore`` (the real
``azure-keyvault-secrets`` client) talking HTTPS to the Key Vault stand-in on loopback. The
fake provider must receive the secret held in the stand-in, at the credential's pinned
version, and nothing of it may come back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.keyvault.secrets._shared import http_challenge_cache

from studio_integrations.services import Services
from studio_integrations.settings import Settings
from studio_integrations.vault.azure import AzureKeyVaultStore
from tests.conftest import make_settings
from tests.connections.conftest import (
    AUDIT,
    CONNECTIONS,
    ESTABLISH,
    GOOD_KEY,
    NODE,
    RETIRE,
    TEST,
    VERIFY_PATH,
    World,
    establish_input,
    ok,
)
from tests.fakes.keyvault import KeyVaultStandIn, StaticTokenCredential
from tests.fakes.provider import Reply
from tests.support.backends import Backend

# The prober would fetch the secret and call the provider between the steps counted here.
pytestmark = pytest.mark.usefixtures("quiet")


@pytest.fixture
async def standin(tmp_path: Path) -> AsyncIterator[KeyVaultStandIn]:
    http_challenge_cache.clear()  # the SDK caches challenges per host:port for the process
    async with KeyVaultStandIn().running(tmp_path / "tls") as running:
        yield running
    http_challenge_cache.clear()


@pytest.fixture
def settings(
    backend: Backend, tmp_path: Path, standin: KeyVaultStandIn, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Azure settings. The store is made by the service's own factory from them; only what
    a loopback stand-in cannot satisfy is added (its test CA, a static token instead of
    DefaultAzureCredential, and no challenge-resource check: 127.0.0.1 is not under
    vault.azure.net)."""
    original = AzureKeyVaultStore.from_settings.__func__  # type: ignore[attr-defined]

    def from_settings(cls: type[AzureKeyVaultStore], /, s: Settings, **kwargs: Any) -> Any:
        kwargs.setdefault("credential", StaticTokenCredential())
        kwargs.setdefault("verify_challenge_resource", False)
        kwargs.setdefault("connection_verify", str(standin.ca))
        kwargs.setdefault("retry_backoff_factor", 0.01)
        return original(cls, s, **kwargs)

    monkeypatch.setattr(AzureKeyVaultStore, "from_settings", classmethod(from_settings))
    return make_settings(backend, tmp_path, secret_store="azure", keyvault_url=standin.url + "/")


async def test_wizard_against_key_vault(
    services: Services, http: httpx.AsyncClient, world: World, standin: KeyVaultStandIn
) -> None:
    vault = services.vault
    assert isinstance(vault, AzureKeyVaultStore)
    fake, token = world.fake, world.token
    (stored,) = standin.secrets["fake-hr-key"]
    assert stored.value == GOOD_KEY

    # Establish with a live test: the value comes from the stand-in, at the pinned version.
    standin.requests.clear()
    data = await ok(
        http, ESTABLISH, {"input": establish_input(world.provider_id, world.credential_id)}, token
    )
    payload = data["establishConnection"]
    assert payload["userErrors"] == []
    connection = payload["connection"]
    connection_id = connection["id"]
    assert connection["status"] == "ACTIVE"
    assert connection["credential"]["keyVaultRef"] == f"{vault.vault_url}/secrets/fake-hr-key"
    assert connection["credential"]["currentVersion"] == stored.version
    assert payload["testRun"]["status"] == "SUCCEEDED"
    assert payload["testRun"]["credentialVersion"] == stored.version
    assert [r.headers["x-api-key"] for r in fake.seen(VERIFY_PATH)] == [stored.value]
    assert [(r.method, r.path) for r in standin.requests if r.status == 200] == [
        ("GET", f"/secrets/fake-hr-key/{stored.version}")
    ]

    # A newer version put into Key Vault changes nothing until a rotation promotes it.
    await vault.set_secret("fake-hr-key", "not-yet-promoted", tags={"studio-tenant": "acme"})
    data = await ok(http, TEST, {"id": connection_id}, token)
    assert data["testConnection"]["run"]["status"] == "SUCCEEDED"
    assert data["testConnection"]["run"]["credentialVersion"] == stored.version
    assert fake.seen(VERIFY_PATH)[-1].headers["x-api-key"] == GOOD_KEY

    # The provider starts failing: retried 503s, then a 401 that is not retried.
    fake.on(
        VERIFY_PATH,
        Reply(503, json={"e": 1}, headers={"X-Request-Id": "req-503a"}),
        Reply(503, json={"e": 2}, headers={"X-Request-Id": "req-503b"}),
        Reply(401, json={"e": 3}, headers={"X-Request-Id": "req-401"}),
    )
    data = await ok(http, TEST, {"id": connection_id}, token)
    failed = data["testConnection"]["run"]
    assert data["testConnection"]["userErrors"] == []
    assert (failed["status"], failed["errorCategory"], failed["externalRef"]) == (
        "FAILED",
        "AUTHENTICATION",
        "req-401",
    )
    assert [(a["number"], a["httpStatus"], a["errorCategory"]) for a in failed["attempts"]] == [
        (1, 503, "SERVER_ERROR"),
        (2, 503, "SERVER_ERROR"),
        (3, 401, "AUTHENTICATION"),
    ]
    assert all(r.headers["x-api-key"] == GOOD_KEY for r in fake.seen(VERIFY_PATH))

    # Key Vault itself failing is a categorised run too, not an error of the API.
    standin.fail_next(1, 403, code="Forbidden")  # not retried by the SDK
    calls = len(fake.seen(VERIFY_PATH))
    data = await ok(http, TEST, {"id": connection_id}, token)
    denied = data["testConnection"]["run"]
    assert (denied["status"], denied["errorCategory"], denied["attempts"]) == (
        "FAILED",
        "CONFIGURATION",
        [],
    )
    assert len(fake.seen(VERIFY_PATH)) == calls  # nothing was sent without the secret

    # Detail with runs, newest first.
    data = await ok(http, NODE, {"id": connection_id}, token)
    runs = data["node"]["runs"]["nodes"]
    assert [r["status"] for r in runs] == ["FAILED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert runs[1]["id"] == failed["id"]
    assert len(runs[1]["attempts"]) == 3
    data = await ok(http, CONNECTIONS, {"filter": {"projectId": "payroll"}}, token)
    assert [c["id"] for c in data["integrationConnections"]["nodes"]] == [connection_id]

    # Retire; then it is never tested again.
    data = await ok(http, RETIRE, {"id": connection_id, "confirmName": "HR production"}, token)
    assert data["retireConnection"]["connection"]["status"] == "RETIRED"
    data = await ok(http, TEST, {"id": connection_id}, token)
    assert [e["code"] for e in data["testConnection"]["userErrors"]] == ["CONNECTION_RETIRED"]

    data = await ok(http, AUDIT, {"subjectId": connection_id}, token)
    types = [e["type"] for e in data["auditEvents"]["nodes"]]
    assert types[0] == "IntegrationConnectionRetired"
    assert types[-1] == "IntegrationConnectionEstablished"
    assert types.count("IntegrationConnectionTested") == 3
    everything = json.dumps(data) + json.dumps(runs)
    assert GOOD_KEY not in everything
    assert "not-yet-promoted" not in everything
