"""rotateCredential, setRotationPolicy, credentialExpiryAlerts.

``rotate_credential`` is also what the REST alias (``rest.rotation``) runs, through the same
GraphQL operation.
"""

from __future__ import annotations

from datetime import timedelta

from studio_integrations.core.clock import utcnow
from studio_integrations.core.errors import UserInputError, UserInputErrors
from studio_integrations.domain import rotation as domain
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.persistence.repository import MAX_PAGE_SIZE
from studio_integrations.resolvers.governed import run_governed
from studio_integrations.schema.context import Info
from studio_integrations.schema.credentials import Credential
from studio_integrations.schema.errors import UserError
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
    """The rotation calls the vault and providers, so it manages its own sessions (no
    transaction is held over a call)."""
    services = info.context.services
    sessions = TenantSessions(services.db, info.context.scope)
    try:
        result = await domain.rotate_credential(
            sessions,
            info.context.action_context(),
            vault=services.vault,
            caller=services.provider_caller,
            credential_id=str(input.credential_id),
            lease=timedelta(seconds=services.settings.rotation_lease_seconds),
            expires_at=input.expires_at,
        )
    except UserInputErrors as exc:
        return RotateCredentialPayload(
            rotation=None,
            credential=None,
            user_errors=[UserError.from_exception(e) for e in exc.errors],
        )
    except UserInputError as exc:
        return RotateCredentialPayload(
            rotation=None, credential=None, user_errors=[UserError.from_exception(exc)]
        )
    return RotateCredentialPayload(
        rotation=CredentialRotation.from_row(result.rotation),
        credential=Credential.from_row(result.credential),
        user_errors=[],
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
        credential=Credential.from_row(outcome.value) if outcome.value is not None else None,
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
