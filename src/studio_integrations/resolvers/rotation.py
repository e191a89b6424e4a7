"""rotateCredential, setRotationPolicy, credentialExpiryAlerts.

``rotate_credential`` is also what the REST alias (``rest.rotation``) runs, through the same
GraphQL operation.
"""

from __future__ import annotations

from datetime import timedelta

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.core.clock import utcnow
from studio_integrations.core.errors import UserInputError
from studio_integrations.domain import rotation as domain
from studio_integrations.persistence.repository import MAX_PAGE_SIZE
from studio_integrations.resolvers.governed import run_governed, run_governed_calls
from studio_integrations.schema.context import Info
from studio_integrations.schema.credentials import Credential
from studio_integrations.schema.rotation import (
    CredentialExpiryAlert,
    CredentialRotation,
    RotateCredentialInput,
    RotateCredentialPayload,
    SetRotationPolicyInput,
    SetRotationPolicyPayload,
)

DEFAULT_ALERTS = 50


async def rotate_credential(info: Info, input: RotateCredentialInput) -> RotateCredentialPayload:
    services = info.context.services
    outcome = await run_governed_calls(
        info,
        lambda sessions, ctx: domain.rotate_credential(
            sessions,
            ctx,
            vault=services.vault,
            caller=services.provider_caller,
            credential_id=str(input.credential_id),
            policy=services.health_policy,
            lease=timedelta(seconds=services.settings.rotation_lease_seconds),
            expires_at=input.expires_at,
        ),
    )
    return RotateCredentialPayload(
        rotation=outcome.map(lambda r: CredentialRotation.from_row(r.rotation)),
        credential=outcome.map(lambda r: Credential.from_row(r.credential)),
        user_errors=outcome.user_errors,
    )


async def set_rotation_policy(
    info: Info, input: SetRotationPolicyInput
) -> SetRotationPolicyPayload:
    credential_id, policy = str(input.credential_id), input.to_domain()
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.set_rotation_policy(
            session, ctx, credential_id=credential_id, policy=policy
        ),
    )
    return SetRotationPolicyPayload(
        credential=outcome.map(Credential.from_row),
        user_errors=outcome.user_errors,
    )


async def resolve_credential_expiry_alerts(
    info: Info, first: int = DEFAULT_ALERTS
) -> list[CredentialExpiryAlert]:
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise UserInputError(
            f"first must be between 0 and {MAX_PAGE_SIZE}", field="first", code="INVALID_PAGE"
        )
    async with info.context.read() as session:
        alerts = await domain.expiry_alerts(session, utcnow())
    return [CredentialExpiryAlert.from_alert(a) for a in alerts[:first]]


@strawberry.type
class RotationQuery:
    credential_expiry_alerts: list[CredentialExpiryAlert] | None = strawberry.field(
        resolver=resolve_credential_expiry_alerts,
        extensions=requires(Scope.CREDENTIALS_READ),
        description=(
            "Credentials whose expiry or rotation due date is within their warning window, "
            "soonest first, with the days left. Requires `credentials:read`."
        ),
    )


@strawberry.type
class RotationMutation:
    rotate_credential: RotateCredentialPayload | None = strawberry.mutation(
        resolver=rotate_credential,
        extensions=requires(ACTION_SCOPES["rotateCredential"]),
        description=(
            "Rotate now: a new version (generated into the vault, or the newest one put there "
            "out of band), verified against every bound connection, promoted only when all "
            "pass. Also `POST /integrations/credentials/rotate`. Requires `credentials:rotate`."
        ),
    )

    set_rotation_policy: SetRotationPolicyPayload | None = strawberry.mutation(
        resolver=set_rotation_policy,
        extensions=requires(ACTION_SCOPES["setRotationPolicy"]),
        description=(
            "How often a credential is rotated and how many days ahead expiry and due "
            "rotation are warned about. Requires `credentials:write`."
        ),
    )
