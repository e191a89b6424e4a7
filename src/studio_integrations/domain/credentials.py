"""Credentials: references to secrets in the vault, never the secrets themselves.

``register_credential`` binds a Key Vault secret identifier (``https://<vault>/secrets/<name>``
or ``local://vault/secrets/<name>``, optionally ``/<version>``) to the tenant with an auth
mode, a rotation strategy, an expiry and a rotation policy. It reads the vault's version
*properties* only (``SecretStore.list_versions``); no value is ever read, stored, returned,
logged or put into an event.

Rules, in the words the Studio shows:

- The reference must name a secret in the configured store (its vault URL equals the store's
  ``vault_url``), else ``VAULT_MISMATCH``: the server could never resolve it.
- **A secret belongs to a tenant.** A secret belongs to tenant T when its newest version
  carries the tag ``studio-tenant=T`` (``studio-integrations secret set NAME --tenant T``
  writes it), and only versions carrying that tag can be pinned. A secret whose tag names
  another tenant, or that has no such tag, is reported exactly like a secret that does not
  exist (``SECRET_NOT_FOUND``, same message), so one tenant can neither bind nor detect
  another tenant's secret. Out-of-band versions (``EXTERNAL`` rotation) must carry the tag
  too.
- **Version pinning.** A reference naming a version pins that version: it must be one of
  the tenant's versions (else ``SECRET_NOT_FOUND``) and usable — enabled and inside its
  not-before/expiry window (else ``SECRET_VERSION_DISABLED``). A reference without a version
  pins the newest usable version of the tenant (``SECRET_VERSION_DISABLED`` when there is
  none). The pinned version is the credential's ``currentVersion``; every use of the
  credential resolves it, never the vault's newest (DESIGN §4). The credential keeps the
  unversioned reference.
- One credential per secret and tenant: ``DUPLICATE_CREDENTIAL``.
- Rotation policy (``check_rotation_policy``, shared with ``setRotationPolicy``): cadence
  1-730 days, expiry warning 1-365 days and shorter than the cadence (``OUT_OF_RANGE``).
- ``expiresAt``, when given, lies in the future (``IN_THE_PAST``).
- **Audience** (DESIGN §12): the providers (``prov_…`` ids of providers the tenant can see)
  and hosts (``api.example.com``, or ``*.example.com`` for its subdomains) the secret may
  be sent to (``INVALID_AUDIENCE``, ``PROVIDER_NOT_FOUND``). Binding the credential to a
  provider outside it is refused with ``CREDENTIAL_AUDIENCE`` unless the caller holds
  ``credentials:write``, whose binding widens the audience by that provider (recorded in
  the connection's event as ``credentialAudienceWidened``); every provider call checks it
  again (``ProviderCaller``), so a secret never reaches a host its owner did not name.

Other codes: ``INVALID_SECRET_REF`` (not a secret identifier), ``TOO_LONG`` (name, search),
``OUT_OF_RANGE`` (``expiringWithinDays``). Validation failures are collected and raised
together (``UserInputErrors``) with GraphQL input paths as ``field``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import AuthMode, RotationStrategy
from studio_integrations.core.errors import UserInputError
from studio_integrations.core.ids import new_id
from studio_integrations.domain.validation import ValidationErrors, flush_or_duplicate
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.persistence.credentials import (
    BoundConnectionRepository,
    CredentialRepository,
)
from studio_integrations.persistence.credentials import CredentialFilter as CredentialFilter
from studio_integrations.persistence.models import Credential, IntegrationConnection, Provider
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository
from studio_integrations.vault.base import (
    SecretNotFound,
    SecretProperties,
    SecretRef,
    SecretStore,
    parse_secret_ref,
)

TENANT_TAG = "studio-tenant"

MIN_CADENCE_DAYS = 1
MAX_CADENCE_DAYS = 730
MIN_EXPIRY_WARNING_DAYS = 1
MAX_EXPIRY_WARNING_DAYS = 365
MAX_NAME_LENGTH = 200
MAX_REF_LENGTH = 2048
MAX_SEARCH_LENGTH = 200
MAX_EXPIRING_WITHIN_DAYS = 3650
MAX_AUDIENCE_ENTRIES = 50
# A DNS host name (lower case, IDNA/ASCII), optionally ``*.`` for its subdomains.
_AUDIENCE_HOST = re.compile(
    r"^(\*\.)?(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    cadence_days: int
    expiry_warning_days: int


@dataclass(frozen=True, slots=True)
class CredentialDefinition:
    key_vault_ref: str
    auth_mode: AuthMode
    rotation_strategy: RotationStrategy
    rotation_policy: RotationPolicy
    expires_at: datetime | None = None
    name: str | None = None
    audience: Sequence[str] | None = None


# --- Validation --------------------------------------------------------------------------


def check_rotation_policy(errors: ValidationErrors, field: str, policy: RotationPolicy) -> None:
    """Cadence 1-730 days; expiry warning 1-365 days and shorter than the cadence.

    ``field`` is the input path of the object holding the two numbers (``input.rotationPolicy``
    here, ``input`` for ``setRotationPolicy``).
    """
    cadence_ok = MIN_CADENCE_DAYS <= policy.cadence_days <= MAX_CADENCE_DAYS
    if not cadence_ok:
        errors.add(
            f"{field}.cadenceDays",
            "OUT_OF_RANGE",
            f"must be between {MIN_CADENCE_DAYS} and {MAX_CADENCE_DAYS} days",
        )
    warning = policy.expiry_warning_days
    if not MIN_EXPIRY_WARNING_DAYS <= warning <= MAX_EXPIRY_WARNING_DAYS:
        errors.add(
            f"{field}.expiryWarningDays",
            "OUT_OF_RANGE",
            f"must be between {MIN_EXPIRY_WARNING_DAYS} and {MAX_EXPIRY_WARNING_DAYS} days",
        )
    elif cadence_ok and warning >= policy.cadence_days:
        errors.add(
            f"{field}.expiryWarningDays",
            "OUT_OF_RANGE",
            "must be shorter than the rotation cadence",
        )


async def check_audience(
    session: AsyncSession, errors: ValidationErrors, field: str, raw: Sequence[str] | None
) -> list[str]:
    """Provider ids the tenant can see, and host names (lower case); sorted, no duplicates."""
    entries = sorted(
        {
            e if e.startswith("prov_") else e.lower().rstrip(".")
            for e in ((x or "").strip() for x in raw or [])
            if e
        }
    )
    if len(entries) > MAX_AUDIENCE_ENTRIES:
        errors.add(field, "TOO_LARGE", f"at most {MAX_AUDIENCE_ENTRIES} providers and hosts")
        return []
    providers = [e for e in entries if e.startswith("prov_")]
    for entry in entries:
        if not entry.startswith("prov_") and not _AUDIENCE_HOST.match(entry):
            errors.add(
                field,
                "INVALID_AUDIENCE",
                f"{entry[:80]!r} is neither a provider id nor a host name (api.example.com, "
                "*.example.com)",
            )
    if providers:
        found = await TenantRepository(session, Provider).get_many(providers)
        for entry, provider in zip(providers, found, strict=True):
            if provider is None:
                errors.add(field, "PROVIDER_NOT_FOUND", f"no provider {entry[:80]!r}")
    return entries


def _aware(moment: datetime) -> datetime:
    """GraphQL may hand over a datetime without offset: it is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _usable(version: SecretProperties, now: datetime) -> bool:
    return (
        version.enabled
        and (version.expires_at is None or _aware(version.expires_at) > now)
        and (version.not_before is None or _aware(version.not_before) <= now)
    )


async def pin_version(
    vault: SecretStore, ref: SecretRef, *, tenant_id: str, field: str
) -> SecretProperties:
    """The version of ``ref`` a credential of ``tenant_id`` pins (see the module docstring).

    Reads version properties only. A secret of another tenant raises the very error a missing
    secret raises.
    """
    missing = UserInputError(
        f"no secret '{ref.name}' in {ref.vault_url}", field=field, code="SECRET_NOT_FOUND"
    )
    try:
        versions = await vault.list_versions(ref.name)
    except SecretNotFound:
        raise missing from None
    if not versions or versions[-1].tags.get(TENANT_TAG) != tenant_id:
        raise missing
    own = [v for v in versions if v.tags.get(TENANT_TAG) == tenant_id]
    now = utcnow()
    if ref.version is not None:
        pinned = next((v for v in own if v.version == ref.version), None)
        if pinned is None:
            raise missing
        if not _usable(pinned, now):
            raise UserInputError(
                f"version {ref.version} of '{ref.name}' is disabled or outside its validity",
                field=field,
                code="SECRET_VERSION_DISABLED",
            )
        return pinned
    usable = [v for v in own if _usable(v, now)]
    if not usable:
        raise UserInputError(
            f"'{ref.name}' has no enabled version", field=field, code="SECRET_VERSION_DISABLED"
        )
    return usable[-1]  # list_versions answers oldest first


async def check_secret_ref(
    errors: ValidationErrors, vault: SecretStore, tenant_id: str, raw: str, field: str
) -> tuple[SecretRef, SecretProperties] | None:
    """A vault reference given in an input (a credential's, an inbound or a webhook signing
    secret's): well formed, in this server's vault, and naming a usable secret of
    ``tenant_id`` (``pin_version``).
    The reference and its pinned version, or None with the reason in ``errors``."""
    raw = raw.strip()
    if len(raw) > MAX_REF_LENGTH:
        errors.add(field, "TOO_LONG", f"must be at most {MAX_REF_LENGTH} characters")
        return None
    try:
        ref = parse_secret_ref(raw, field=field)
    except UserInputError as exc:
        errors.items.append(exc)
        return None
    if ref.vault_url != vault.vault_url:
        errors.add(
            field,
            "VAULT_MISMATCH",
            f"this server resolves secrets in {vault.vault_url}, not {ref.vault_url}",
        )
        return None
    try:
        pinned = await pin_version(vault, ref, tenant_id=tenant_id, field=field)
    except UserInputError as exc:
        errors.items.append(exc)
        return None
    return ref, pinned


# --- Governed actions --------------------------------------------------------------------


async def register_credential(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    definition: CredentialDefinition,
) -> Credential:
    """Bind a vault secret by reference; emits ``CredentialRegistered`` in the same
    transaction. Every failure is collected before anything is written."""
    errors = ValidationErrors()
    ref_field = "input.keyVaultRef"
    raw_ref = (definition.key_vault_ref or "").strip()
    checked: tuple[SecretRef, SecretProperties] | None = None
    if not raw_ref:
        errors.add(ref_field, "REQUIRED", "must not be blank")
    else:
        checked = await check_secret_ref(errors, vault, ctx.tenant_id, raw_ref, ref_field)
    name = (definition.name or "").strip() or None
    if name is not None and len(name) > MAX_NAME_LENGTH:
        errors.add("input.name", "TOO_LONG", f"must be at most {MAX_NAME_LENGTH} characters")
    check_rotation_policy(errors, "input.rotationPolicy", definition.rotation_policy)
    expires_at = _aware(definition.expires_at) if definition.expires_at is not None else None
    if expires_at is not None and expires_at <= utcnow():
        errors.add("input.expiresAt", "IN_THE_PAST", "must be in the future")
    audience = await check_audience(session, errors, "input.audience", definition.audience)

    repo = CredentialRepository(session)
    if checked is not None and await repo.by_reference(str(checked[0].unversioned())):
        errors.add(
            ref_field, "DUPLICATE_CREDENTIAL", "a credential for this secret is already registered"
        )
    errors.raise_any()
    assert checked is not None
    ref, pinned = checked

    reference = str(ref.unversioned())
    policy = definition.rotation_policy
    credential = repo.add(
        Credential(
            id=new_id("Credential"),
            tenant_id=ctx.tenant_id,
            name=name or ref.name,
            key_vault_ref=reference,
            auth_mode=definition.auth_mode,
            current_version=pinned.version,
            expires_at=expires_at,
            rotation_strategy=definition.rotation_strategy,
            cadence_days=policy.cadence_days,
            expiry_warning_days=policy.expiry_warning_days,
            audience=audience,
        )
    )
    await flush_or_duplicate(
        session, ref_field, "DUPLICATE_CREDENTIAL", "a credential for this secret is registered"
    )
    emit_event(
        session,
        ctx,
        type=EventType.CREDENTIAL_REGISTERED,
        subject_type="Credential",
        subject_id=credential.id,
        data={
            "keyVaultRef": reference,
            "name": credential.name,
            "authMode": credential.auth_mode.value,
            "currentVersion": credential.current_version,
            "rotationStrategy": credential.rotation_strategy.value,
            "expiresAt": expires_at.isoformat() if expires_at else None,
            "audience": audience,
            "rotationPolicy": {
                "cadenceDays": policy.cadence_days,
                "expiryWarningDays": policy.expiry_warning_days,
            },
        },
    )
    return credential


# --- Queries -----------------------------------------------------------------------------


async def list_credentials(
    session: AsyncSession, flt: CredentialFilter, page: PageRequest
) -> Page[Credential]:
    """The tenant's credentials, newest first; ``expiringWithinDays`` includes expired ones."""
    errors = ValidationErrors()
    if flt.search is not None and len(flt.search) > MAX_SEARCH_LENGTH:
        errors.add("filter.search", "TOO_LONG", f"must be at most {MAX_SEARCH_LENGTH} characters")
    days = flt.expiring_within_days
    if days is not None and not 0 <= days <= MAX_EXPIRING_WITHIN_DAYS:
        errors.add(
            "filter.expiringWithinDays",
            "OUT_OF_RANGE",
            f"must be between 0 and {MAX_EXPIRING_WITHIN_DAYS}",
        )
    errors.raise_any()
    before = utcnow() + timedelta(days=days) if days is not None else None
    return await CredentialRepository(session).search(flt, page, expiring_before=before)


async def connections_for_credentials(
    session: AsyncSession, credential_ids: Sequence[str]
) -> dict[str, list[IntegrationConnection]]:
    return await BoundConnectionRepository(session).for_credentials(credential_ids)
