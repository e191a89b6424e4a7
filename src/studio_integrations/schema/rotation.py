"""Rotation types, inputs and payloads: versions and runs, never secret values.

``CredentialRotation`` is a ``Node`` (``node(id:)``, needs ``credentials:read``) and is
reachable from ``Credential.rotations``/``lastRotation`` and the ``rotateCredential``
payload; its status is readable while it runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

import studio_integrations.schema.enums  # noqa: F401  (registers the shared enums)
from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.enums import RotationStatus
from studio_integrations.domain import rotation as domain
from studio_integrations.domain.credentials import RotationPolicy
from studio_integrations.persistence.models import Credential as CredentialRow
from studio_integrations.persistence.models import CredentialRotation as RotationRow
from studio_integrations.resolvers import loaders
from studio_integrations.schema.connections import IntegrationRun
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError
from studio_integrations.schema.relay import Node

if TYPE_CHECKING:
    from studio_integrations.schema.credentials import Credential

strawberry.enum(
    domain.ExpiryAlertKind,
    name="CredentialExpiryAlertKind",
    description="EXPIRY: the secret expires soon. ROTATION_DUE: the rotation cadence is due.",
)

CredentialRef = Annotated["Credential", strawberry.lazy("studio_integrations.schema.credentials")]


@strawberry.type(
    description="One rotation of a credential: PENDING → VERIFYING → PROMOTED or FAILED. "
    "Shows versions and verification runs, never a secret value."
)
class CredentialRotation(Node):
    credential_id: strawberry.ID
    status: RotationStatus
    previous_version: str | None = strawberry.field(
        description="The version current when the rotation started."
    )
    new_version: str | None = strawberry.field(
        description="The version under verification (null until written or chosen)."
    )
    failure_reason: str | None = strawberry.field(description="Why it failed, when it did.")
    requested_by: str | None = strawberry.field(
        description="Who asked: an operator's subject, or the service for scheduled rotations."
    )
    started_at: datetime
    finished_at: datetime | None
    lease_until: datetime | None = strawberry.field(
        description="While it runs: when it counts as abandoned if its process stops."
    )

    @strawberry.field(
        description="One VERIFICATION run per bound, non-retired connection, with the new "
        "version. Requires `connections:read` (runs belong to the connections).",
        extensions=requires(Scope.CONNECTIONS_READ),
    )
    async def verification_runs(self, info: Info) -> list[IntegrationRun] | None:
        rows = await info.context.loaders.load(loaders.runs_by_rotation, str(self.id))
        return [IntegrationRun.from_row(r) for r in rows]

    @strawberry.field(description="The rotated credential.")
    async def credential(self, info: Info) -> CredentialRef | None:
        from studio_integrations.schema.credentials import Credential

        row = await info.context.loaders.by_id(CredentialRow).load(str(self.credential_id))
        return None if row is None else Credential.from_row(row)

    @classmethod
    def from_row(cls, row: RotationRow) -> CredentialRotation:
        return cls(
            id=strawberry.ID(row.id),
            credential_id=strawberry.ID(row.credential_id),
            status=row.status,
            previous_version=row.previous_version,
            new_version=row.new_version,
            failure_reason=row.failure_reason,
            requested_by=row.requested_by,
            started_at=row.started_at,
            finished_at=row.finished_at,
            lease_until=row.lease_until
            if row.status in (RotationStatus.PENDING, RotationStatus.VERIFYING)
            else None,
        )


@strawberry.type(
    description="A credential whose expiry or rotation due date is within its warning window."
)
class CredentialExpiryAlert:
    kind: domain.ExpiryAlertKind
    at: datetime = strawberry.field(description="When it expires, or when rotation is due.")
    days_left: int = strawberry.field(
        description="Whole days until `at` (rounded down); negative when overdue."
    )
    current_version: str
    credential_row: strawberry.Private[CredentialRow]

    @strawberry.field
    def credential(self) -> CredentialRef:
        from studio_integrations.schema.credentials import Credential

        return Credential.from_row(self.credential_row)

    @classmethod
    def from_alert(cls, alert: domain.ExpiryAlert) -> CredentialExpiryAlert:
        return cls(
            kind=alert.kind,
            at=alert.at,
            days_left=alert.days_left,
            current_version=alert.credential.current_version,
            credential_row=alert.credential,
        )


# --- Inputs and payloads -----------------------------------------------------------------


@strawberry.input
class RotateCredentialInput:
    credential_id: strawberry.ID
    expires_at: datetime | None = strawberry.field(
        default=None,
        description="When the new version expires (in the future). Without it: the vault "
        "version's expiry, else the previous version's lifetime from now.",
    )


@strawberry.type
class RotateCredentialPayload:
    rotation: CredentialRotation | None = strawberry.field(
        description="PROMOTED or FAILED (a failed verification is a result, not a userError)."
    )
    credential: CredentialRef | None
    user_errors: list[UserError]


@strawberry.input
class SetRotationPolicyInput:
    credential_id: strawberry.ID
    cadence_days: int = strawberry.field(description="Rotate every this many days (1-730).")
    expiry_warning_days: int = strawberry.field(
        description="Warn this many days before expiry or due rotation (1-365, shorter than "
        "the cadence)."
    )

    def to_domain(self) -> RotationPolicy:
        return RotationPolicy(
            cadence_days=self.cadence_days, expiry_warning_days=self.expiry_warning_days
        )


@strawberry.type
class SetRotationPolicyPayload:
    credential: CredentialRef | None
    user_errors: list[UserError]
