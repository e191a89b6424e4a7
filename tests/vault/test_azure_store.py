"""AzureKeyVaultStore: the real ``azure-keyvault-secrets`` aio client against the stand-in.

Every call below goes through the SDK's pipeline (challenge authentication, retries, paging,
deserialisation) and over HTTPS on loopback to ``tests.fakes.keyvault``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.secrets._shared import http_challenge_cache

from studio_integrations.core.errors import StudioError, UserInputError
from studio_integrations.persistence.db import Database
from studio_integrations.settings import Settings
from studio_integrations.vault.azure import AzureKeyVaultStore, VaultMisconfigured
from studio_integrations.vault.base import (
    SecretNotFound,
    VaultAccessDenied,
    VaultUnavailable,
    parse_secret_ref,
)
from studio_integrations.vault.factory import make_secret_store
from studio_integrations.vault.local import LocalSecretStore
from tests.fakes.connect_proxy import ConnectProxy
from tests.fakes.keyvault import (
    KEYVAULT_SCOPE,
    TENANT_ID,
    KeyVaultStandIn,
    StaticTokenCredential,
)

NAME = "deputy-api-key"


@pytest.fixture(autouse=True)
def _fresh_challenge_cache() -> Iterator[None]:
    # The SDK caches each vault's challenge per host:port for the whole process; a port reused
    # by a later stand-in would otherwise skip the challenge these tests observe.
    http_challenge_cache.clear()
    yield
    http_challenge_cache.clear()


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[KeyVaultStandIn]:
    async with KeyVaultStandIn().running(tmp_path / "tls") as standin:
        yield standin


@pytest.fixture
def credential() -> StaticTokenCredential:
    return StaticTokenCredential()


def open_store(
    vault: KeyVaultStandIn, credential: StaticTokenCredential, **overrides: Any
) -> AzureKeyVaultStore:
    options: dict[str, Any] = {
        # The stand-in's challenge names https://vault.azure.net, which 127.0.0.1 is not under.
        "verify_challenge_resource": False,
        "connection_verify": str(vault.ca),
        "retry_backoff_factor": 0.01,
        **overrides,
    }
    return AzureKeyVaultStore(vault.url + "/", credential, **options)


@pytest.fixture
async def store(
    vault: KeyVaultStandIn, credential: StaticTokenCredential
) -> AsyncIterator[AzureKeyVaultStore]:
    s = open_store(vault, credential)
    yield s
    await s.close()


def assert_no_value(exc: BaseException, *values: str) -> None:
    """Neither the error nor anything chained to it, nor its traceback text, holds a value."""
    assert exc.__cause__ is None and exc.__context__ is None
    text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)
    for value in values:
        assert value not in text


async def test_set_then_get_latest_and_by_version(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    assert store.vault_url == vault.url  # trailing slash dropped
    expires = datetime(2031, 5, 1, 12, 30, tzinfo=UTC)
    v1 = await store.set_secret(
        NAME, "first-value", content_type="text/plain", expires_at=expires, tags={"owner": "ops"}
    )
    vault.advance(1)
    v2 = await store.set_secret(NAME, "second-value")

    assert v1.version != v2.version
    assert (v1.name, v1.enabled, v1.content_type, v1.tags) == (
        NAME,
        True,
        "text/plain",
        {"owner": "ops"},
    )
    assert v1.expires_at == expires and v2.expires_at is None
    stored = vault.secrets[NAME]
    assert [s.version for s in stored] == [v1.version, v2.version]
    assert [s.value for s in stored] == ["first-value", "second-value"]
    assert v1.created_at == datetime.fromtimestamp(stored[0].created, UTC)
    assert v2.created_at > v1.created_at

    latest = await store.get_secret(NAME)
    assert (latest.value, latest.properties.version) == ("second-value", v2.version)
    old = await store.get_secret(NAME, v1.version)
    assert (old.value, old.properties) == ("first-value", v1)
    assert "first-value" not in repr(old)
    # The reference the rest of the service keeps parses as a Key Vault identifier.
    ref = parse_secret_ref(f"{store.vault_url}/secrets/{NAME}/{v1.version}")
    assert (ref.vault_url, ref.name, ref.version) == (vault.url, NAME, v1.version)


async def test_list_versions_follows_next_links_and_orders_by_creation(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    created = []
    for i in range(5):
        created.append((await store.set_secret(NAME, f"value-{i}")).version)
        vault.advance(1)
    await store.set_secret("other-secret", "x")

    versions = await store.list_versions(NAME)

    assert [v.version for v in versions] == created
    assert all(v.name == NAME and v.enabled for v in versions)
    pages = [r for r in vault.requests if r.path == f"/secrets/{NAME}/versions"]
    assert len(pages) == 3  # five versions, two a page
    assert "skiptoken" not in pages[0].query
    assert all("skiptoken=" in p.query for p in pages[1:])  # the nextLinks were followed
    assert await store.list_versions("never-set") == []


async def test_update_properties_disables_and_sets_expiry(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    v1 = await store.set_secret(NAME, "first")
    vault.advance(5)
    v2 = await store.set_secret(NAME, "second")

    naive_expiry = datetime(2032, 1, 2, 3, 4, 5)  # taken as UTC
    updated = await store.update_properties(
        NAME, v1.version, enabled=False, expires_at=naive_expiry
    )
    assert updated.version == v1.version and updated.enabled is False
    assert updated.expires_at == naive_expiry.replace(tzinfo=UTC)
    assert updated.updated_at > updated.created_at == v1.created_at
    assert vault.secrets[NAME][0].enabled is False
    assert vault.secrets[NAME][0].exp == int(naive_expiry.replace(tzinfo=UTC).timestamp())

    with pytest.raises(SecretNotFound, match="disabled") as caught:
        await store.get_secret(NAME, v1.version)
    assert vault.requests[-1].status == 403  # Key Vault's answer, mapped like the local store
    assert_no_value(caught.value, "first")
    listed = {v.version: v for v in await store.list_versions(NAME)}
    assert listed[v1.version].enabled is False and listed[v2.version].enabled is True
    assert (await store.get_secret(NAME)).value == "second"

    await store.update_properties(NAME, v2.version, enabled=False)
    with pytest.raises(SecretNotFound):
        await store.get_secret(NAME)  # the latest version is disabled
    await store.update_properties(NAME, v1.version, enabled=True)
    assert (await store.get_secret(NAME, v1.version)).value == "first"


async def test_unknown_secrets_and_versions_are_not_found(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    with pytest.raises(SecretNotFound, match="nope"):
        await store.get_secret("nope")
    assert vault.requests[-1].status == 404
    v1 = await store.set_secret(NAME, "value")
    with pytest.raises(SecretNotFound):
        await store.get_secret(NAME, "0" * 32)
    with pytest.raises(SecretNotFound):
        await store.update_properties("nope", v1.version, enabled=False)

    seen = len(vault.requests)
    # Names Key Vault cannot hold are answered without a round trip.
    with pytest.raises(SecretNotFound):
        await store.get_secret("not a name")
    with pytest.raises(SecretNotFound):
        await store.get_secret(NAME, "../v")
    with pytest.raises(UserInputError):
        await store.set_secret("has space", "v")
    with pytest.raises(UserInputError):
        await store.set_secret(NAME, "x" * (25 * 1024 + 1))
    assert len(vault.requests) == seen


async def test_the_401_challenge_comes_first_then_bearer_requests(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn, credential: StaticTokenCredential
) -> None:
    await store.set_secret(NAME, "challenge-canary")
    await store.get_secret(NAME)
    await store.list_versions(NAME)

    first, second, *rest = vault.requests
    # The SDK first sends the PUT without credentials or body, to elicit the challenge …
    assert (first.method, first.path, first.authorization, first.body_length) == (
        "PUT",
        f"/secrets/{NAME}",
        None,
        0,
    )
    assert first.status == 401
    # … then the real request, with a token for the scope and tenant the challenge named.
    assert (second.method, second.bearer, second.status) == ("PUT", credential.token, 200)
    assert second.body_length > 0
    assert credential.asked == [((KEYVAULT_SCOPE,), TENANT_ID)]
    assert rest and all(r.bearer == credential.token and r.status == 200 for r in rest)
    assert all(r.api_version for r in vault.requests)


@pytest.mark.parametrize(
    ("status", "expected", "words"),
    [
        (429, VaultUnavailable, "throttling"),
        (503, VaultUnavailable, "unavailable"),
        (500, VaultUnavailable, "unavailable"),
        (403, VaultAccessDenied, "denied"),
        (401, VaultAccessDenied, "credential"),
    ],
)
async def test_service_errors_map_to_project_errors(
    vault: KeyVaultStandIn,
    credential: StaticTokenCredential,
    status: int,
    expected: type[StudioError],
    words: str,
) -> None:
    canary = "canary-value-7f3a9c"
    async with open_store(vault, credential, retry_total=1) as s:
        vault.fail_next(5, status)
        with pytest.raises(expected, match=words) as caught:
            await s.set_secret(NAME, canary)
    assert str(status) in str(caught.value) or status == 401
    assert status in [r.status for r in vault.requests]
    assert NAME not in vault.secrets  # nothing was stored
    assert_no_value(caught.value, canary)


async def test_transient_failures_are_retried_by_the_sdk(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    vault.fail_next(2, 503, retry_after=0)
    props = await store.set_secret(NAME, "after-retries")
    assert vault.value_of(NAME, props.version) == "after-retries"
    assert [r.status for r in vault.requests if r.bearer] == [503, 503, 200]


async def test_a_token_the_vault_rejects_is_access_denied(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    vault.accepted_tokens = {"a-token-we-do-not-have"}
    with pytest.raises(VaultAccessDenied, match="credential"):
        await store.get_secret(NAME)
    assert {r.status for r in vault.requests} == {401}
    assert any(r.bearer for r in vault.requests)


async def test_disabled_answer_without_inner_code_is_still_not_found(
    store: AzureKeyVaultStore, vault: KeyVaultStandIn
) -> None:
    # Older service versions sent only the message; it is matched too.
    await store.set_secret(NAME, "v")
    vault.fail_next(
        1, 403, code="Forbidden", message="Operation get is not allowed on a disabled secret."
    )
    with pytest.raises(SecretNotFound, match="disabled"):
        await store.get_secret(NAME)


async def test_an_unreachable_vault_is_unavailable(credential: StaticTokenCredential) -> None:
    canary = "unreachable-canary"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AzureKeyVaultStore(
        f"https://127.0.0.1:{port}", credential, verify_challenge_resource=False, retry_total=0
    ) as s:
        with pytest.raises(VaultUnavailable, match="cannot be reached") as caught:
            await s.set_secret(NAME, canary)
    assert_no_value(caught.value, canary)


async def test_close_closes_only_the_credential_it_created(
    monkeypatch: pytest.MonkeyPatch, credential: StaticTokenCredential
) -> None:
    import azure.identity.aio

    created: list[StaticTokenCredential] = []

    def default_credential() -> StaticTokenCredential:
        created.append(StaticTokenCredential())
        return created[-1]

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", default_credential)
    owned = AzureKeyVaultStore("https://example.vault.azure.net")
    await owned.close()
    assert len(created) == 1 and created[0].closed

    injected = AzureKeyVaultStore("https://example.vault.azure.net", credential)
    await injected.close()
    assert not credential.closed


@pytest.mark.parametrize(
    "url",
    ["http://example.vault.azure.net", "https://example.vault.azure.net/secrets", "", "vault"],
)
def test_vault_urls_must_be_https_origins(url: str, credential: StaticTokenCredential) -> None:
    with pytest.raises(VaultMisconfigured):
        AzureKeyVaultStore(url, credential)


async def test_make_secret_store_picks_the_configured_store(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    base: dict[str, Any] = {"state_dir": tmp_path / "state", "master_key": "k"}
    try:
        azure = make_secret_store(
            Settings(secret_store="azure", keyvault_url="https://Studio.vault.azure.net/", **base),
            db,
        )
        assert isinstance(azure, AzureKeyVaultStore)
        assert azure.vault_url == "https://studio.vault.azure.net"  # as parse_secret_ref spells it
        await azure.close()

        local = make_secret_store(Settings(secret_store="local", **base), db)
        assert isinstance(local, LocalSecretStore)

        with pytest.raises(VaultMisconfigured, match="STUDIO_KEYVAULT_URL"):
            make_secret_store(Settings(secret_store="azure", keyvault_url=None, **base), db)
    finally:
        await db.dispose()


async def test_cli_secret_set_writes_to_key_vault(tmp_path: Path) -> None:
    """``studio-integrations secret set`` with ``STUDIO_SECRET_STORE=azure``, as an operator runs it.

    Nothing in the subprocess is a test hook: it uses ``DefaultAzureCredential`` with a service
    principal from the standard ``AZURE_*`` variables, verifies the challenge resource, and
    talks to ``https://studio-test.vault.azure.net`` and ``https://login.microsoftonline.com``.
    ``HTTPS_PROXY`` tunnels both names to the stand-in (whose certificate carries them) and
    ``SSL_CERT_FILE`` trusts the test CA; both are standard variables of the HTTP stack.
    """
    vault_host = "studio-test.vault.azure.net"
    standin = KeyVaultStandIn()
    standin.add_client("studio-cli-app", "client-secret-for-tests")
    standin.accepted_tokens = set()  # only tokens its token endpoint issued
    value = "cli-canary-value-41c9"
    async with standin.running(tmp_path / "tls", [vault_host, "login.microsoftonline.com"]):
        proxy = ConnectProxy("127.0.0.1", standin.port)
        async with proxy.running():
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("STUDIO_", "AZURE_", "IDENTITY_", "MSI_"))
                and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
            }
            env.update(
                STUDIO_SECRET_STORE="azure",
                STUDIO_KEYVAULT_URL=f"https://{vault_host}/",
                STUDIO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
                STUDIO_STATE_DIR=str(tmp_path / "state"),
                AZURE_TENANT_ID=TENANT_ID,
                AZURE_CLIENT_ID="studio-cli-app",
                AZURE_CLIENT_SECRET="client-secret-for-tests",
                AZURE_TOKEN_CREDENTIALS="EnvironmentCredential",
                HTTPS_PROXY=proxy.url,
                https_proxy=proxy.url,
                SSL_CERT_FILE=str(standin.ca),
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "studio_integrations.cli",
                "secret",
                "set",
                NAME,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            out, err = await asyncio.wait_for(process.communicate(f"{value}\n".encode()), 120)

    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 0, stderr
    printed = dict(line.split(": ", 1) for line in stdout.strip().splitlines())
    (stored,) = standin.secrets[NAME]
    assert stored.value == value  # the trailing newline is not stored
    assert printed["reference"] == f"https://{vault_host}/secrets/{NAME}"
    assert printed["version"] == stored.version
    assert printed["id"] == f"https://{vault_host}/secrets/{NAME}/{stored.version}"
    assert value not in stdout + stderr
    # The credential came from the token endpoint, for Key Vault's scope and the vault's tenant,
    # and the vault accepted only that token.
    assert [(t["tenant"], t["client_id"], t["scope"]) for t in standin.token_requests] == [
        (TENANT_ID, "studio-cli-app", KEYVAULT_SCOPE)
    ]
    assert [(r.host, r.status) for r in standin.requests] == [(vault_host, 401), (vault_host, 200)]
    assert standin.requests[1].bearer in (standin.accepted_tokens or set())
    assert set(proxy.targets) == {f"{vault_host}:443", "login.microsoftonline.com:443"}
