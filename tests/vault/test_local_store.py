"""The embedded local://vault: versioned, AES-GCM encrypted at rest."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from studio_integrations.core.errors import StudioError, UserInputError
from studio_integrations.persistence.models import VaultSecretVersion
from studio_integrations.services import Services
from studio_integrations.vault.base import SecretNotFound, parse_secret_ref
from studio_integrations.vault.local import LocalSecretStore


async def test_versions_values_and_attributes(services: Services) -> None:
    store = LocalSecretStore(services.db, "master-key")
    v1 = await store.set_secret("deputy-key", "first")
    v2 = await store.set_secret("deputy-key", "second")
    assert v1.version != v2.version
    assert (await store.get_secret("deputy-key")).value == "second"
    assert (await store.get_secret("deputy-key", v1.version)).value == "first"
    assert [p.version for p in await store.list_versions("deputy-key")] == [v1.version, v2.version]
    await store.update_properties("deputy-key", v1.version, enabled=False)
    with pytest.raises(SecretNotFound):
        await store.get_secret("deputy-key", v1.version)
    with pytest.raises(SecretNotFound):
        await store.get_secret("nope")


async def test_values_are_encrypted_at_rest_and_bound_to_their_slot(services: Services) -> None:
    store = LocalSecretStore(services.db, "master-key")
    a = await store.set_secret("a", "plain-text-value")
    b = await store.set_secret("b", "other")
    async with services.db.session(None) as s:
        rows = {r.name: r for r in (await s.execute(select(VaultSecretVersion))).scalars()}
    assert b"plain-text-value" not in rows["a"].ciphertext
    # Moving a's ciphertext into b's slot does not decrypt: name/version are authenticated.
    async with services.db.transaction(None) as s:
        await s.execute(
            update(VaultSecretVersion)
            .where(VaultSecretVersion.version == b.version)
            .values(ciphertext=rows["a"].ciphertext, nonce=rows["a"].nonce)
        )
    with pytest.raises(StudioError, match="cannot be decrypted"):
        await store.get_secret("b")
    with pytest.raises(StudioError, match="cannot be decrypted"):
        await LocalSecretStore(services.db, "another-master-key").get_secret("a", a.version)


async def test_bad_names_and_sizes(services: Services) -> None:
    store = LocalSecretStore(services.db, "k")
    with pytest.raises(UserInputError):
        await store.set_secret("has space", "v")
    with pytest.raises(UserInputError):
        await store.set_secret("big", "x" * (25 * 1024 + 1))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "https://acme.vault.azure.net/secrets/deputy-key",
            ("https://acme.vault.azure.net", "deputy-key", None),
        ),
        (
            "https://ACME.vault.azure.net/secrets/k/0123abcd",
            ("https://acme.vault.azure.net", "k", "0123abcd"),
        ),
        ("local://vault/secrets/deputy-key", ("local://vault", "deputy-key", None)),
    ],
)
def test_secret_references_parse(raw: str, expected: tuple[str, str, str | None]) -> None:
    ref = parse_secret_ref(raw)
    assert (ref.vault_url, ref.name, ref.version) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://acme.vault.azure.net/secrets/k",
        "https://acme.vault.azure.net/keys/k",
        "https://acme.vault.azure.net/secrets/bad_name",
        "https://acme.vault.azure.net/secrets/k/v/extra",
        "local://elsewhere/secrets/k",
        "https://acme.vault.azure.net/secrets/k?x=1",
        "s3cr3t",
    ],
)
def test_bad_secret_references_are_refused(raw: str) -> None:
    with pytest.raises(UserInputError) as refused:
        parse_secret_ref(raw)
    assert refused.value.code == "INVALID_SECRET_REF"
