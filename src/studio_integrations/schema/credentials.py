"""Credential types, inputs and payloads: metadata and references only.

No field or input here can carry secret material: a credential is bound by its Key Vault
reference, and only version identifiers and dates of the secret are shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

import studio_integrations.schema.enums  # noqa: F401  (registers the shared enums)
from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.core.enums import AuthMode, RotationStrategy
from studio_integrations.domain import credentials as domain
from studio_integrations.persistence.models import Credential as CredentialRow
from studio_integrations.resolvers import loaders
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError
from studio_integrations.schema.relay import Connection, Node

if TYPE_CHECKING:
    from studio_integrations.schema.connections import IntegrationConnection
    from studio_integrations.schema.rotation import CredentialRotation


@strawberry.type(description="When a credential is due for rotation, and when to warn.")
class RotationPolicy:
    cadence_days: int = strawberry.field(description="Rotate every this many days (1-730).")
    expiry_warning_days: int = strawberry.field(
        description="Warn this many days before expiry (1-365, shorter than the cadence)."
    )


@strawberry.type(description="Which of its own actions the viewer may perform on a credential.")
class CredentialViewerCan:
    rotate: bool
    set_rotation_policy: bool


@strawberry.type(
    description="A secret bound by its Key Vault reference. The value never leaves the server."
)
class Credential(Node):
    key_vault_ref: str = strawberry.field(
        description="The unversioned secret identifier, e.g. "
        "`https://myvault.vault.azure.net/secrets/deputy-api-key`."
    )
    name: str | None
    auth_mode: AuthMode
    current_version: str = strawberry.field(
        description="The pinned version every use resolves; a rotation promotes a new one."
    )
    last_rotated_at: datetime | None
    expires_at: datetime | None
    rotation_strategy: RotationStrategy
    rotation_policy: RotationPolicy | None
    created_at: datetime
    audience: list[str] = strawberry.field(
        description="Provider ids and host names (`api.example.com`, `*.example.com`) the "
        "secret may be sent to; binding elsewhere needs `credentials:write` and widens it."
    )

    @strawberry.field(
        description="Connections bound to this credential, newest first. "
        "Requires `connections:read`.",
        extensions=requires(Scope.CONNECTIONS_READ),
    )
    async def connections(
        self, info: Info
    ) -> (
        list[
            Annotated[
                IntegrationConnection, strawberry.lazy("studio_integrations.schema.connections")
            ]
        ]
        | None
    ):
        from studio_integrations.schema.connections import IntegrationConnection

        rows = await info.context.loaders.load(loaders.connections_by_credential, str(self.id))
        return [IntegrationConnection.from_row(r) for r in rows]

    @strawberry.field(description="Rotations of this credential, newest first (at most 100).")
    async def rotations(
        self, info: Info, first: int = 10
    ) -> list[
        Annotated[CredentialRotation, strawberry.lazy("studio_integrations.schema.rotation")]
    ]:
        from studio_integrations.schema.rotation import CredentialRotation

        limit = max(0, min(first, 100))
        rows = await info.context.loaders.load(
            loaders.rotations_by_credential, (str(self.id), limit)
        )
        return [CredentialRotation.from_row(r) for r in rows]

    @strawberry.field(description="The newest rotation (running or finished), if any.")
    async def last_rotation(
        self, info: Info
    ) -> (
        Annotated[CredentialRotation, strawberry.lazy("studio_integrations.schema.rotation")] | None
    ):
        from studio_integrations.schema.rotation import CredentialRotation

        rows = await info.context.loaders.load(loaders.rotations_by_credential, (str(self.id), 1))
        return CredentialRotation.from_row(rows[0]) if rows else None

    @strawberry.field
    def viewer_can(self, info: Info) -> CredentialViewerCan:
        principal = info.context.require_principal()
        return CredentialViewerCan(
            rotate=principal.has(ACTION_SCOPES["rotateCredential"]),
            set_rotation_policy=principal.has(ACTION_SCOPES["setRotationPolicy"]),
        )

    @classmethod
    def from_row(cls, row: CredentialRow) -> Credential:
        policy = (
            RotationPolicy(
                cadence_days=row.cadence_days, expiry_warning_days=row.expiry_warning_days
            )
            if row.cadence_days is not None and row.expiry_warning_days is not None
            else None
        )
        return cls(
            id=strawberry.ID(row.id),
            key_vault_ref=row.key_vault_ref,
            name=row.name,
            auth_mode=row.auth_mode,
            current_version=row.current_version,
            last_rotated_at=row.last_rotated_at,
            expires_at=row.expires_at,
            rotation_strategy=row.rotation_strategy,
            rotation_policy=policy,
            created_at=row.created_at,
            audience=list(row.audience or []),
        )


CredentialConnection = Connection[Credential]


# --- Inputs ------------------------------------------------------------------------------


@strawberry.input(description="Narrow the credential list. All given conditions must hold.")
class CredentialFilter:
    auth_mode: AuthMode | None = None
    rotation_strategy: RotationStrategy | None = None
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text in the name or the reference."
    )
    expiring_within_days: int | None = strawberry.field(
        default=None,
        description="Only credentials expiring within this many days (expired ones included).",
    )

    def to_domain(self) -> domain.CredentialFilter:
        return domain.CredentialFilter(
            auth_mode=self.auth_mode,
            rotation_strategy=self.rotation_strategy,
            search=self.search,
            expiring_within_days=self.expiring_within_days,
        )


@strawberry.input
class RotationPolicyInput:
    cadence_days: int
    expiry_warning_days: int


@strawberry.input
class RegisterCredentialInput:
    key_vault_ref: str = strawberry.field(
        description="`https://<vault>/secrets/<name>[/<version>]` (or `local://vault/…`) in "
        "the configured store, tagged `studio-tenant=<your tenant>`. A version pins it; "
        "otherwise the newest enabled version is pinned."
    )
    auth_mode: AuthMode
    rotation_strategy: RotationStrategy
    rotation_policy: RotationPolicyInput
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the secret expires; must be in the future."
    )
    name: str | None = strawberry.field(
        default=None, description="A display name; the secret's name by default."
    )
    audience: list[str] | None = strawberry.field(
        default=None,
        description="Provider ids and host names (`api.example.com`, `*.example.com`) the "
        "secret may be sent to. Empty: nowhere until a caller with `credentials:write` binds it.",
    )

    def to_domain(self) -> domain.CredentialDefinition:
        return domain.CredentialDefinition(
            key_vault_ref=self.key_vault_ref,
            auth_mode=self.auth_mode,
            rotation_strategy=self.rotation_strategy,
            rotation_policy=domain.RotationPolicy(
                cadence_days=self.rotation_policy.cadence_days,
                expiry_warning_days=self.rotation_policy.expiry_warning_days,
            ),
            expires_at=self.expires_at,
            name=self.name,
            audience=self.audience,
        )


@strawberry.type
class RegisterCredentialPayload:
    credential: Credential | None
    user_errors: list[UserError]
