"""The embedded ``local://vault``: versioned secrets, AES-256-GCM encrypted at rest.

Each version is sealed under a key derived (HKDF-SHA256) from ``STUDIO_MASTER_KEY``, with
the secret's name and version as associated data, so a ciphertext moved to another slot no
longer opens. Rows live in the project's own database (``vault_secret_versions``).
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from studio_integrations.core.clock import utcnow
from studio_integrations.core.errors import StudioError
from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import VaultSecretVersion
from studio_integrations.vault.base import (
    SecretNotFound,
    SecretProperties,
    SecretValue,
    check_new_secret,
)

LOCAL_VAULT_URL = "local://vault"


def derive_key(master_key: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"studio-integrations local vault v1"
    ).derive(master_key.encode())


def _properties(row: VaultSecretVersion) -> SecretProperties:
    return SecretProperties(
        name=row.name,
        version=row.version,
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        not_before=row.not_before,
        content_type=row.content_type,
        tags=dict(row.tags or {}),
    )


class LocalSecretStore:
    vault_url = LOCAL_VAULT_URL

    def __init__(self, db: Database, master_key: str) -> None:
        self._db = db
        self._aead = AESGCM(derive_key(master_key))

    @staticmethod
    def _aad(name: str, version: str) -> bytes:
        return f"{name}/{version}".encode()

    async def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        expires_at: datetime | None = None,
        tags: dict[str, str] | None = None,
    ) -> SecretProperties:
        check_new_secret(name, value)
        version = uuid.uuid4().hex
        nonce = os.urandom(12)
        row = VaultSecretVersion(
            name=name,
            version=version,
            nonce=nonce,
            ciphertext=self._aead.encrypt(nonce, value.encode(), self._aad(name, version)),
            content_type=content_type,
            expires_at=expires_at,
            tags=tags or {},
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        async with self._db.transaction(None) as session:
            session.add(row)
        return _properties(row)

    async def _row(self, name: str, version: str | None) -> VaultSecretVersion:
        stmt = select(VaultSecretVersion).where(VaultSecretVersion.name == name)
        if version is None:
            stmt = stmt.order_by(VaultSecretVersion.created_at.desc(), VaultSecretVersion.version)
        else:
            stmt = stmt.where(VaultSecretVersion.version == version)
        async with self._db.read_session(None) as session:
            row = (await session.execute(stmt.limit(1))).scalar_one_or_none()
        if row is None:
            raise SecretNotFound(f"secret {name}{'/' + version if version else ''} not found")
        return row

    async def get_secret(self, name: str, version: str | None = None) -> SecretValue:
        row = await self._row(name, version)
        if not row.enabled:
            raise SecretNotFound(f"secret {name}/{row.version} is disabled")
        try:
            plain = self._aead.decrypt(row.nonce, row.ciphertext, self._aad(row.name, row.version))
        except InvalidTag as exc:
            raise StudioError(
                "local vault: secret cannot be decrypted with this master key"
            ) from exc
        return SecretValue(properties=_properties(row), value=plain.decode())

    async def list_versions(self, name: str) -> list[SecretProperties]:
        async with self._db.read_session(None) as session:
            rows = (
                await session.execute(
                    select(VaultSecretVersion)
                    .where(VaultSecretVersion.name == name)
                    .order_by(VaultSecretVersion.created_at, VaultSecretVersion.version)
                )
            ).scalars()
            return [_properties(r) for r in rows]

    async def update_properties(
        self,
        name: str,
        version: str,
        *,
        enabled: bool | None = None,
        expires_at: datetime | None = None,
    ) -> SecretProperties:
        async with self._db.transaction(None) as session:
            row = (
                await session.execute(
                    select(VaultSecretVersion).where(
                        VaultSecretVersion.name == name, VaultSecretVersion.version == version
                    )
                )
            ).scalar_one_or_none()
            if row is None:
                raise SecretNotFound(f"secret {name}/{version} not found")
            if enabled is not None:
                row.enabled = enabled
            if expires_at is not None:
                row.expires_at = expires_at
            row.updated_at = utcnow()
        return _properties(row)

    async def close(self) -> None:
        return None
