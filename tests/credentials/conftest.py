"""Credential fixtures: queries, valid inputs, tenant-tagged secrets, row counts."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import AuditEvent, Credential, OutboxMessage
from studio_integrations.vault.base import SecretProperties, SecretStore
from tests.support.rows import row_counts

CREDENTIAL_FIELDS = """
  id keyVaultRef name authMode currentVersion lastRotatedAt expiresAt rotationStrategy
  rotationPolicy { cadenceDays expiryWarningDays }
  connections { id name status }
  viewerCan { rotate setRotationPolicy }
"""

REGISTER_CREDENTIAL = f"""
mutation ($input: RegisterCredentialInput!) {{
  registerCredential(input: $input) {{
    credential {{ {CREDENTIAL_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

CREDENTIALS = f"""
query ($filter: CredentialFilter, $first: Int! = 100, $after: String) {{
  credentials(filter: $filter, first: $first, after: $after) {{
    nodes {{ {CREDENTIAL_FIELDS} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

NODE = f"""
query ($id: ID!) {{
  node(id: $id) {{ id ... on Credential {{ {CREDENTIAL_FIELDS} }} }}
}}
"""

AUDIT = """
query ($subjectId: ID) {
  auditEvents(filter: {subjectId: $subjectId}) {
    nodes { type subject { type id } data }
  }
}
"""

SECRET = "deputy-api-key"
LOCAL_REF = f"local://vault/secrets/{SECRET}"


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


_VALID_INPUT: dict[str, Any] = {
    "keyVaultRef": LOCAL_REF,
    "authMode": "API_KEY",
    "rotationStrategy": "EXTERNAL",
    "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
    "name": "Deputy production key",
}


def credential_input(**overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_VALID_INPUT)
    doc["expiresAt"] = in_days(180)
    doc.update(overrides)
    return doc


async def put_secret(
    vault: SecretStore, name: str = SECRET, value: str = "s3cr3t", *, tenant: str | None = "acme"
) -> SecretProperties:
    tags = {"studio-tenant": tenant} if tenant is not None else None
    return await vault.set_secret(name, value, tags=tags)


@dataclass(frozen=True)
class Counts:
    credentials: int
    audit_events: int
    outbox: int


async def counts(db: Database) -> Counts:
    """Every credential and event row, across tenants."""
    return Counts(
        **await row_counts(
            db, credentials=Credential, audit_events=AuditEvent, outbox=OutboxMessage
        )
    )
