"""The SecretStore protocol and Key Vault-shaped secret references.

A reference is an Azure Key Vault secret identifier, ``{vault_url}/secrets/{name}`` with an
optional ``/{version}``; the embedded store's vault URL is ``local://vault``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from studio_integrations.core.errors import NotFound, StudioError, UserInputError

# Key Vault secret names: 1-127 characters, letters, digits and dashes.
SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
SECRET_VERSION = re.compile(r"^[0-9A-Za-z]{1,64}$")
MAX_SECRET_BYTES = 25 * 1024  # Key Vault's limit for a secret value


def check_new_secret(name: str, value: str) -> None:
    """What every store accepts as a new secret version (Key Vault's own rules)."""
    if not SECRET_NAME.match(name):
        raise UserInputError("secret names are 1-127 letters, digits or dashes", field="name")
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise UserInputError("secret value is larger than 25 KiB", field="value")


class SecretNotFound(NotFound):
    code = "SECRET_NOT_FOUND"


class VaultAccessDenied(StudioError):
    code = "VAULT_FORBIDDEN"


class VaultUnavailable(StudioError):
    code = "VAULT_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class SecretRef:
    vault_url: str
    name: str
    version: str | None = None

    def __str__(self) -> str:
        base = f"{self.vault_url}/secrets/{self.name}"
        return f"{base}/{self.version}" if self.version else base

    def unversioned(self) -> SecretRef:
        return SecretRef(self.vault_url, self.name)


def parse_secret_ref(raw: str, *, field: str = "keyVaultRef") -> SecretRef:
    parts = urlsplit(raw.strip())
    netloc = parts.netloc.lower()
    path = [p for p in parts.path.split("/") if p]
    valid_vault = (parts.scheme == "https" and bool(parts.hostname)) or (
        parts.scheme == "local" and netloc == "vault"
    )
    if (
        not valid_vault
        or parts.query
        or parts.fragment
        or len(path) not in (2, 3)
        or path[0] != "secrets"
        or not SECRET_NAME.match(path[1])
        or (len(path) == 3 and not SECRET_VERSION.match(path[2]))
    ):
        raise UserInputError(
            "expected a Key Vault secret identifier: https://<vault>/secrets/<name>[/<version>]"
            " or local://vault/secrets/<name>[/<version>]",
            field=field,
            code="INVALID_SECRET_REF",
        )
    vault_url = f"{parts.scheme}://{netloc}"
    return SecretRef(vault_url, path[1], path[2] if len(path) == 3 else None)


@dataclass(frozen=True, slots=True)
class SecretProperties:
    name: str
    version: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    not_before: datetime | None = None
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SecretValue:
    properties: SecretProperties
    value: str = field(repr=False)


class SecretStore(Protocol):
    vault_url: str

    async def get_secret(self, name: str, version: str | None = None) -> SecretValue: ...

    async def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        expires_at: datetime | None = None,
        tags: dict[str, str] | None = None,
    ) -> SecretProperties: ...

    async def list_versions(self, name: str) -> list[SecretProperties]: ...

    async def update_properties(
        self,
        name: str,
        version: str,
        *,
        enabled: bool | None = None,
        expires_at: datetime | None = None,
    ) -> SecretProperties: ...

    async def close(self) -> None: ...
