"""Credential rotation: a new secret version, verified against every bound connection, then
promoted — or rejected with the current version left in use.

``rotate_credential`` (``rotateCredential``, the REST alias and the scheduler) runs a rotation
through PENDING → VERIFYING → PROMOTED | FAILED:

1. **Read** the credential (``CREDENTIAL_NOT_FOUND`` for an unknown id or another tenant's).
   An ``EXTERNAL`` credential looks in the vault for the newest enabled, tenant-tagged
   (``studio-tenant``) version newer than the current one (``NO_NEWER_VERSION`` when there is
   none: nothing is written).
2. **Claim** (one transaction holding the credential's row lock, see
   ``persistence.rotations``): rotations of this credential whose lease ran out are resolved
   to FAILED first (their process died); a live one answers ``ROTATION_IN_PROGRESS``;
   otherwise a PENDING rotation with a lease (``lease_until``) is inserted and committed.
3. ``GENERATED``: the server generates ``secrets.token_urlsafe(48)`` and writes it as a new
   vault version tagged ``studio-tenant=<tenant>`` and ``studio-rotation=<rotation id>``;
   the value exists only in that call. (A vault refusal fails the rotation.)
4. **VERIFYING** (short transaction): the new version is recorded and one verification call
   is planned per bound, non-retired connection, with the *new* version.
5. The calls run with no transaction open, a few at a time.
6. **Finish** (one transaction, row lock again): every call is recorded as a VERIFICATION run
   (``domain.connections.record_run``; a failed one raises an ``IntegrationFailure``). All
   passed (or no connection is bound): the credential's ``current_version`` moves to the new
   version, ``last_rotated_at`` to now, ``expires_at`` to the new version's expiry
   (``new_version_expiry``: the ``expiresAt`` the rotation was asked for, else the vault
   version's, else the previous version's lifetime again — an expiry never silently
   disappears, so neither does its alert) — PROMOTED, ``CredentialRotated``. Otherwise
   FAILED, ``CredentialRotationFailed``, the credential untouched; a rejected generated
   version is disabled in the vault afterwards.

Promotion and the rotation's terminal status commit together, so a credential is never half
promoted. A process that dies mid-rotation leaves a PENDING/VERIFYING row whose lease expires;
the next ``rotateCredential`` of that credential, or the scheduler's sweep
(``resolve_abandoned``), marks it FAILED (reason ``ABANDONED``) and disables a generated
version it may have written (found by its ``studio-rotation`` tag). Events carry versions and
run ids, never values.

``set_rotation_policy`` (``setRotationPolicy``) checks the policy with
``domain.credentials.check_rotation_policy`` and emits ``CredentialRotationPolicyChanged``;
an unchanged policy is a no-op (no event).

``expiry_alerts`` (``credentialExpiryAlerts``) lists credentials whose expiry or rotation due
date is within their warning window, soonest first, with whole days left (negative when
overdue). ``warn_expiring`` and ``alert_due_external`` are the scheduler's once-per-version
notifications, both ``CredentialExpiring`` events: ``data.reason`` is ``EXPIRY_WARNING``
(the current version entered its expiry warning window; remembered in
``Credential.expiry_warned_version``) or ``ROTATION_DUE`` (an EXTERNAL credential's cadence
has passed and a new version must be put into the vault; remembered by the event itself in
the audit log).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import Clock, utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import (
    ConnectionStatus,
    FailureCategory,
    RotationStatus,
    RotationStrategy,
    RunKind,
    RunStatus,
)
from studio_integrations.core.errors import StudioError, UserInputError
from studio_integrations.core.ids import new_id, type_of
from studio_integrations.domain.connections import (
    CallPlan,
    _plan,
    call_provider,
    record_run,
)
from studio_integrations.domain.credentials import (
    MAX_EXPIRY_WARNING_DAYS,
    TENANT_TAG,
    RotationPolicy,
    _aware,
    _usable,
    check_rotation_policy,
)
from studio_integrations.domain.failures import record_failure
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.domain.validation import ValidationErrors
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.outbound.provider_calls import (
    CallOutcome,
    ConfigurationInvalid,
    ProviderCaller,
)
from studio_integrations.persistence.credentials import BoundConnectionRepository
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.persistence.models import (
    Credential,
    CredentialRotation,
    IntegrationRun,
    Provider,
)
from studio_integrations.persistence.repository import TenantRepository
from studio_integrations.persistence.rotations import RotationRepository
from studio_integrations.telemetry import metrics
from studio_integrations.vault.base import (
    SecretNotFound,
    SecretProperties,
    SecretStore,
    parse_secret_ref,
)

log = logging.getLogger(__name__)


ROTATION_TAG = "studio-rotation"
DEFAULT_LEASE = timedelta(minutes=10)
GENERATED_SECRET_BYTES = 48  # token_urlsafe(48): 64 characters, 384 bits
VERIFY_CONCURRENCY = 8
ABANDONED = "ABANDONED"
CREDENTIAL_FIELD = "input.credentialId"


class ExpiryAlertKind(StrEnum):
    EXPIRY = "EXPIRY"
    ROTATION_DUE = "ROTATION_DUE"


@dataclass(frozen=True, slots=True)
class RotationResult:
    rotation: CredentialRotation
    credential: Credential


@dataclass(frozen=True, slots=True)
class ExpiryAlert:
    credential: Credential
    kind: ExpiryAlertKind
    at: datetime
    days_left: int


@dataclass(frozen=True, slots=True)
class _Target:
    """What the claim read about the credential (no ORM objects cross an outside call)."""

    credential_id: str
    secret_name: str
    strategy: RotationStrategy
    current_version: str


# --- Helpers ------------------------------------------------------------------------------


def _not_found() -> UserInputError:
    return UserInputError("no such credential", field=CREDENTIAL_FIELD, code="CREDENTIAL_NOT_FOUND")


async def _credential(session: AsyncSession, credential_id: str) -> Credential:
    if not credential_id or type_of(credential_id) != "Credential":
        raise _not_found()
    credential = await TenantRepository(session, Credential).get(credential_id)
    if credential is None:
        raise _not_found()
    return credential


def _system(ctx: ActionContext) -> ActionContext:
    """The service acting on its own, under the trace of whatever prompted it."""
    return ActionContext.system(ctx.tenant_id, trace_id=ctx.trace_id)


def rotation_data(
    rotation: CredentialRotation,
    strategy: RotationStrategy,
    runs: Sequence[IntegrationRun] = (),
) -> dict[str, Any]:
    """An event's view of a rotation: versions and run ids, never a value."""
    return {
        "rotationId": rotation.id,
        "status": rotation.status.value,
        "strategy": strategy.value,
        "previousVersion": rotation.previous_version,
        "newVersion": rotation.new_version,
        "failureReason": rotation.failure_reason,
        "verificationRuns": [
            {
                "runId": run.id,
                "connectionId": run.connection_id,
                "status": run.status.value,
                "errorCategory": run.error_category.value if run.error_category else None,
                "httpStatus": run.http_status,
            }
            for run in runs
        ],
    }


async def _fail(
    session: AsyncSession,
    ctx: ActionContext,
    rotation: CredentialRotation,
    strategy: RotationStrategy,
    reason: str,
    now: datetime,
    *,
    policy: HealthPolicy,
    runs: Sequence[IntegrationRun] = (),
    category: FailureCategory | None = None,
) -> None:
    """FAILED with ``CredentialRotationFailed``. ``category`` raises an ``IntegrationFailure``
    for failures no run recorded (runs raise their own)."""
    rotation.status = RotationStatus.FAILED
    metrics.ROTATIONS.labels(RotationStatus.FAILED.value).inc()
    rotation.failure_reason = reason
    rotation.finished_at = now
    rotation.lease_until = None
    await session.flush()
    if category is not None:
        await record_failure(
            session,
            ctx,
            policy=policy,
            category=category,
            message=f"rotation {rotation.id} of credential {rotation.credential_id}: {reason}",
            connection_id=None,
        )
    emit_event(
        session,
        ctx,
        type=EventType.CREDENTIAL_ROTATION_FAILED,
        subject_type="Credential",
        subject_id=rotation.credential_id,
        data=rotation_data(rotation, strategy, runs),
    )


async def _resolve_stale(
    session: AsyncSession,
    ctx: ActionContext,
    rotations: Sequence[CredentialRotation],
    strategy_of: dict[str, RotationStrategy],
    now: datetime,
    *,
    policy: HealthPolicy,
) -> list[CredentialRotation]:
    resolved = []
    for rotation in rotations:
        if rotation.lease_until is not None and _aware(rotation.lease_until) > now:
            continue
        await _fail(
            session,
            _system(ctx),
            rotation,
            strategy_of[rotation.credential_id],
            f"{ABANDONED}: the process running it stopped before it finished "
            f"(it was {rotation.status.value})",
            now,
            policy=policy,
            category=FailureCategory.UNKNOWN,
        )
        resolved.append(rotation)
    return resolved


async def _disable_generated(vault: SecretStore, secret_name: str, rotation_ids: set[str]) -> None:
    """Disable vault versions that rejected or abandoned generated rotations wrote, so they
    can never be adopted or pinned. Best effort: the credential never points at them."""
    if not rotation_ids:
        return
    try:
        versions = await vault.list_versions(secret_name)
        for version in versions:
            if version.tags.get(ROTATION_TAG) in rotation_ids and version.enabled:
                await vault.update_properties(secret_name, version.version, enabled=False)
    except (StudioError, OSError) as exc:
        log.warning(
            "could not disable rejected generated versions of %s: %s",
            secret_name,
            type(exc).__name__,
        )


async def newer_external_version(
    vault: SecretStore, secret_name: str, *, tenant_id: str, current_version: str, now: datetime
) -> SecretProperties:
    """The newest enabled version of the tenant newer than ``current_version``."""
    try:
        versions = await vault.list_versions(secret_name)
    except SecretNotFound:
        versions = []
    own = [v for v in versions if v.tags.get(TENANT_TAG) == tenant_id]
    index = next((i for i, v in enumerate(own) if v.version == current_version), None)
    later = own[index + 1 :] if index is not None else own
    usable = [v for v in later if v.version != current_version and _usable(v, now)]
    if not usable:
        raise UserInputError(
            f"the vault has no enabled version of '{secret_name}' newer than the current "
            f"version {current_version}: put the new version in first "
            f"(tagged {TENANT_TAG}=<your tenant>)",
            field=CREDENTIAL_FIELD,
            code="NO_NEWER_VERSION",
        )
    return usable[-1]  # list_versions answers oldest first


# --- Rotation ------------------------------------------------------------------------------


async def _claim(
    sessions: TenantSessions,
    ctx: ActionContext,
    target: _Target,
    new_version: str | None,
    now: datetime,
    lease: timedelta,
    *,
    policy: HealthPolicy,
) -> tuple[CredentialRotation, list[CredentialRotation]]:
    async with sessions.write() as session:
        repo = RotationRepository(session)
        credential = await repo.lock_credential(target.credential_id)
        if credential is None:
            raise _not_found()
        live = await repo.live_for(credential.id, lock=True)
        stale = await _resolve_stale(
            session, ctx, live, {credential.id: credential.rotation_strategy}, now, policy=policy
        )
        if len(stale) < len(live):
            raise UserInputError(
                "a rotation of this credential is already running; wait for it to finish",
                field=CREDENTIAL_FIELD,
                code="ROTATION_IN_PROGRESS",
            )
        if credential.current_version != target.current_version:
            raise UserInputError(
                "another rotation of this credential finished meanwhile; look at its result",
                field=CREDENTIAL_FIELD,
                code="ROTATION_IN_PROGRESS",
            )
        rotation = repo.add(
            CredentialRotation(
                id=new_id("CredentialRotation"),
                tenant_id=ctx.tenant_id,
                credential_id=credential.id,
                status=RotationStatus.PENDING,
                previous_version=credential.current_version,
                new_version=new_version,
                requested_by=ctx.actor.subject,
                started_at=now,
                lease_until=now + lease,
            )
        )
        await session.flush()
        return rotation, stale


async def _start_verifying(
    sessions: TenantSessions,
    ctx: ActionContext,
    rotation_id: str,
    new_version: str,
    now: datetime,
    lease: timedelta,
) -> list[CallPlan | ConfigurationInvalid] | None:
    """PENDING → VERIFYING with the new version; the verification plans. None when the
    rotation is no longer ours (resolved as abandoned meanwhile)."""
    async with sessions.write() as session:
        rotation = await RotationRepository(session).get_locked(rotation_id)
        if rotation is None or rotation.status is not RotationStatus.PENDING:
            return None
        credential = await TenantRepository(session, Credential).get(rotation.credential_id)
        assert credential is not None  # credentials are never deleted
        rotation.status = RotationStatus.VERIFYING
        rotation.new_version = new_version
        rotation.lease_until = now + lease
        bound = await BoundConnectionRepository(session).for_credentials([credential.id])
        connections = sorted(
            (c for c in bound.get(credential.id, []) if c.status is not ConnectionStatus.RETIRED),
            key=lambda c: c.id,
        )
        providers = await TenantRepository(session, Provider).get_many(
            [c.provider_id for c in connections]
        )
        plans: list[CallPlan | ConfigurationInvalid] = []
        for connection, provider in zip(connections, providers, strict=True):
            assert provider is not None  # providers are never deleted
            plan = _plan(
                connection.id, provider, connection.configuration, credential, version=new_version
            )
            if isinstance(plan, ConfigurationInvalid):
                # Keep which connection it was: the run is recorded against it.
                plan = _UnplannableCall(connection.id, plan.message)
            plans.append(plan)
        await session.flush()
        return plans


class _UnplannableCall(ConfigurationInvalid):
    """A connection whose verification call cannot even be built (recorded as a failed
    CONFIGURATION run)."""

    def __init__(self, connection_id: str, message: str) -> None:
        super().__init__(message)
        self.connection_id = connection_id


async def _verify(
    caller: ProviderCaller, vault: SecretStore, plans: Sequence[CallPlan | ConfigurationInvalid]
) -> list[tuple[str, datetime, CallOutcome]]:
    gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def one(plan: CallPlan | ConfigurationInvalid) -> tuple[str, datetime, CallOutcome]:
        connection_id = plan.connection_id if isinstance(plan, CallPlan | _UnplannableCall) else ""
        async with gate:
            started_at = utcnow()
            return connection_id, started_at, await call_provider(caller, vault, plan)

    return list(await asyncio.gather(*(one(p) for p in plans)))


async def _finish(
    sessions: TenantSessions,
    ctx: ActionContext,
    credential_id: str,
    rotation_id: str,
    strategy: RotationStrategy,
    new_props: SecretProperties | None,
    results: Sequence[tuple[str, datetime, CallOutcome]],
    now: datetime,
    requested_expiry: datetime | None = None,
    *,
    policy: HealthPolicy,
) -> RotationResult:
    async with sessions.write() as session:
        repo = RotationRepository(session)
        credential = await repo.lock_credential(credential_id)
        assert credential is not None
        # Locks in the claim's order (credential, then rotation); the sweep skips locked rows.
        rotation = await repo.get_locked(rotation_id)
        assert rotation is not None
        runs = [
            await record_run(
                session,
                ctx,
                connection_id=connection_id,
                kind=RunKind.VERIFICATION,
                outcome=outcome,
                credential_version=rotation.new_version,
                started_at=started_at,
                rotation_id=rotation.id,
                policy=policy,
            )
            for connection_id, started_at, outcome in results
        ]
        if rotation.status is not RotationStatus.VERIFYING:
            return RotationResult(rotation, credential)  # resolved as abandoned meanwhile
        failed = [r for r in runs if r.status is RunStatus.FAILED]
        if failed:
            categories = sorted(
                {(r.error_category or FailureCategory.UNKNOWN).value for r in failed}
            )
            await _fail(
                session,
                ctx,
                rotation,
                strategy,
                f"verification failed on {len(failed)} of {len(runs)} connection(s) "
                f"({', '.join(categories)}); version {rotation.previous_version} stays current",
                now,
                policy=policy,
                runs=runs,
            )
        elif credential.current_version != rotation.previous_version:
            await _fail(
                session,
                ctx,
                rotation,
                strategy,
                "the credential's current version changed while this rotation ran",
                now,
                policy=policy,
                runs=runs,
                category=FailureCategory.UNKNOWN,
            )
        else:
            assert rotation.new_version is not None
            credential.expires_at = new_version_expiry(credential, new_props, requested_expiry, now)
            credential.current_version = rotation.new_version
            credential.last_rotated_at = now
            rotation.status = RotationStatus.PROMOTED
            metrics.ROTATIONS.labels(RotationStatus.PROMOTED.value).inc()
            rotation.finished_at = now
            rotation.lease_until = None
            await session.flush()
            emit_event(
                session,
                ctx,
                type=EventType.CREDENTIAL_ROTATED,
                subject_type="Credential",
                subject_id=credential.id,
                data=rotation_data(rotation, strategy, runs),
            )
        return RotationResult(rotation, credential)


def new_version_expiry(
    credential: Credential,
    new_props: SecretProperties | None,
    requested: datetime | None,
    now: datetime,
) -> datetime | None:
    """The promoted version's expiry: the one asked for, else the vault version's, else the
    previous version's lifetime (expiry minus when it became current) from now; None only
    for a credential that never had an expiry."""
    if requested is not None:
        return _aware(requested)
    if new_props is not None and new_props.expires_at is not None:
        return _aware(new_props.expires_at)
    if credential.expires_at is None:
        return None
    became_current = credential.last_rotated_at or credential.created_at
    lifetime = _aware(credential.expires_at) - _aware(became_current)
    return now + lifetime if lifetime > timedelta(0) else None


def check_requested_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    """``expiresAt`` of a rotation request: in the future (``IN_THE_PAST``)."""
    if expires_at is None:
        return None
    aware = _aware(expires_at)
    if aware <= now:
        raise UserInputError("must be in the future", field="input.expiresAt", code="IN_THE_PAST")
    return aware


async def rotate_credential(
    sessions: TenantSessions,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    caller: ProviderCaller,
    credential_id: str,
    policy: HealthPolicy,
    clock: Clock = utcnow,
    lease: timedelta = DEFAULT_LEASE,
    expires_at: datetime | None = None,
) -> RotationResult:
    """Rotate now (see the module docstring). Raises ``UserInputError`` for what the caller
    can fix; a failed verification is a result (FAILED), not an error. ``expires_at``: the
    new version's expiry (see ``new_version_expiry``)."""
    requested_expiry = check_requested_expiry(expires_at, clock())
    async with sessions.read() as session:
        credential = await _credential(session, credential_id)
        target = _Target(
            credential_id=credential.id,
            secret_name=parse_secret_ref(credential.key_vault_ref).name,
            strategy=credential.rotation_strategy,
            current_version=credential.current_version,
        )
        live = await RotationRepository(session).live_for(credential.id)
        if any(r.lease_until is not None and _aware(r.lease_until) > clock() for r in live):
            raise UserInputError(
                "a rotation of this credential is already running; wait for it to finish",
                field=CREDENTIAL_FIELD,
                code="ROTATION_IN_PROGRESS",
            )

    new_props: SecretProperties | None = None
    if target.strategy is RotationStrategy.EXTERNAL:
        new_props = await newer_external_version(
            vault,
            target.secret_name,
            tenant_id=ctx.tenant_id,
            current_version=target.current_version,
            now=clock(),
        )

    rotation, stale = await _claim(
        sessions,
        ctx,
        target,
        new_props.version if new_props else None,
        clock(),
        lease,
        policy=policy,
    )
    if target.strategy is RotationStrategy.GENERATED:
        await _disable_generated(vault, target.secret_name, {r.id for r in stale})
        try:
            new_props = await vault.set_secret(
                target.secret_name,
                secrets.token_urlsafe(GENERATED_SECRET_BYTES),
                tags={TENANT_TAG: ctx.tenant_id, ROTATION_TAG: rotation.id},
            )
        except Exception as exc:  # whatever the vault did, the claimed rotation is settled
            async with sessions.write() as session:
                row = await RotationRepository(session).get_locked(rotation.id)
                credential_row = await TenantRepository(session, Credential).get(
                    target.credential_id
                )
                assert row is not None
                assert credential_row is not None
                if row.status is RotationStatus.PENDING:
                    await _fail(
                        session,
                        ctx,
                        row,
                        target.strategy,
                        f"the vault refused the new version ({type(exc).__name__})",
                        clock(),
                        policy=policy,
                        category=FailureCategory.CONFIGURATION,
                    )
                return RotationResult(row, credential_row)
    assert new_props is not None

    plans = await _start_verifying(sessions, ctx, rotation.id, new_props.version, clock(), lease)
    if plans is None:  # lost the lease: someone resolved it as abandoned
        if target.strategy is RotationStrategy.GENERATED:
            await _disable_generated(vault, target.secret_name, {rotation.id})
        async with sessions.read() as session:
            row = await RotationRepository(session).get(rotation.id)
            credential_row = await TenantRepository(session, Credential).get(target.credential_id)
            assert row is not None
            assert credential_row is not None
            return RotationResult(row, credential_row)

    results = await _verify(caller, vault, plans)
    result = await _finish(
        sessions,
        ctx,
        target.credential_id,
        rotation.id,
        target.strategy,
        new_props,
        results,
        clock(),
        requested_expiry,
        policy=policy,
    )
    if (
        target.strategy is RotationStrategy.GENERATED
        and result.rotation.status is not RotationStatus.PROMOTED
    ):
        await _disable_generated(vault, target.secret_name, {rotation.id})
    return result


# --- Abandoned rotations (the scheduler's sweep) -------------------------------------------


async def resolve_abandoned(
    sessions: TenantSessions,
    vault: SecretStore,
    now: datetime,
    *,
    policy: HealthPolicy,
    limit: int = 100,
) -> int:
    """Resolve rotations whose lease ran out to FAILED. ``sessions`` is a system-scope pair
    (the sweep crosses tenants); each failure is recorded under its own tenant."""
    generated: dict[str, set[str]] = {}
    count = 0
    async with sessions.write() as session:
        repo = RotationRepository(session)
        for rotation in await repo.claim_abandoned(now, limit):
            credential = await TenantRepository(session, Credential).get(rotation.credential_id)
            assert credential is not None
            ctx = ActionContext.system(rotation.tenant_id)
            strategy_of = {credential.id: credential.rotation_strategy}
            resolved = await _resolve_stale(
                session, ctx, [rotation], strategy_of, now, policy=policy
            )
            count += len(resolved)
            if resolved and credential.rotation_strategy is RotationStrategy.GENERATED:
                name = parse_secret_ref(credential.key_vault_ref).name
                generated.setdefault(name, set()).add(rotation.id)
    for name, ids in generated.items():
        await _disable_generated(vault, name, ids)
    return count


# --- Policy ------------------------------------------------------------------------------


async def set_rotation_policy(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    credential_id: str,
    policy: RotationPolicy,
    expected_version: int | None = None,
) -> Credential:
    errors = ValidationErrors()
    check_rotation_policy(errors, "input", policy)
    credential: Credential | None = None
    try:
        credential = await _credential(session, credential_id)
    except UserInputError as exc:
        errors.items.insert(0, exc)
    errors.raise_any()
    assert credential is not None
    if expected_version is not None and credential.version != expected_version:
        raise UserInputError(
            f"the credential changed since you read it (now version {credential.version})",
            field="input.version",
            code="STALE_VERSION",
        )
    previous = {
        "cadenceDays": credential.cadence_days,
        "expiryWarningDays": credential.expiry_warning_days,
    }
    if (credential.cadence_days, credential.expiry_warning_days) == (
        policy.cadence_days,
        policy.expiry_warning_days,
    ):
        return credential  # nothing changed: no event
    credential.cadence_days = policy.cadence_days
    credential.expiry_warning_days = policy.expiry_warning_days
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.CREDENTIAL_ROTATION_POLICY_CHANGED,
        subject_type="Credential",
        subject_id=credential.id,
        data={
            "previous": previous,
            "rotationPolicy": {
                "cadenceDays": policy.cadence_days,
                "expiryWarningDays": policy.expiry_warning_days,
            },
        },
    )
    return credential


# --- Due dates, alerts and warnings -------------------------------------------------------


def rotation_due_at(credential: Credential) -> datetime | None:
    """When the cadence next asks for a rotation (from the last rotation, else creation)."""
    if credential.cadence_days is None:
        return None
    base = credential.last_rotated_at or credential.created_at
    return _aware(base) + timedelta(days=credential.cadence_days)


def days_left(at: datetime, now: datetime) -> int:
    return math.floor((_aware(at) - now) / timedelta(days=1))


def alert_for(credential: Credential, now: datetime) -> ExpiryAlert | None:
    """The credential's soonest of expiry and rotation due date, when within its warning
    window (``expiry_warning_days``)."""
    if credential.expiry_warning_days is None:
        return None
    window = timedelta(days=credential.expiry_warning_days)
    found: list[tuple[datetime, ExpiryAlertKind]] = []
    if credential.expires_at is not None:
        found.append((_aware(credential.expires_at), ExpiryAlertKind.EXPIRY))
    due = rotation_due_at(credential)
    if due is not None:
        found.append((due, ExpiryAlertKind.ROTATION_DUE))
    in_window = sorted((at, kind) for at, kind in found if at - window <= now)
    if not in_window:
        return None
    at, kind = in_window[0]
    return ExpiryAlert(credential=credential, kind=kind, at=at, days_left=days_left(at, now))


async def expiry_alerts(session: AsyncSession, now: datetime) -> list[ExpiryAlert]:
    """``credentialExpiryAlerts``: soonest first."""
    candidates = await RotationRepository(session).alert_candidates(
        now + timedelta(days=MAX_EXPIRY_WARNING_DAYS)
    )
    alerts = [a for a in (alert_for(c, now) for c in candidates) if a is not None]
    return sorted(alerts, key=lambda a: (a.at, a.credential.id))


async def warn_expiring(sessions: TenantSessions, now: datetime, *, limit: int = 100) -> int:
    """``CredentialExpiring`` (reason EXPIRY_WARNING) once per credential version entering its
    expiry warning window. System-scope sessions; rows claimed with SKIP LOCKED."""
    warned = 0
    async with sessions.write() as session:
        rows = await RotationRepository(session).claim_unwarned(
            now + timedelta(days=MAX_EXPIRY_WARNING_DAYS), limit
        )
        for credential in rows:
            assert credential.expires_at is not None
            assert credential.expiry_warning_days is not None
            expires_at = _aware(credential.expires_at)
            if expires_at - timedelta(days=credential.expiry_warning_days) > now:
                continue
            credential.expiry_warned_version = credential.current_version
            await session.flush()
            emit_event(
                session,
                ActionContext.system(credential.tenant_id),
                type=EventType.CREDENTIAL_EXPIRING,
                subject_type="Credential",
                subject_id=credential.id,
                data={
                    "reason": "EXPIRY_WARNING",
                    "currentVersion": credential.current_version,
                    "expiresAt": expires_at.isoformat(),
                    "daysLeft": days_left(expires_at, now),
                    "expiryWarningDays": credential.expiry_warning_days,
                },
            )
            warned += 1
    return warned


async def due_credentials(
    sessions: TenantSessions, now: datetime
) -> list[tuple[str, str, RotationStrategy]]:
    """(tenant, credential id, strategy) of credentials whose cadence has passed."""
    async with sessions.read() as session:
        rows = await RotationRepository(session).with_cadence()
        return [
            (c.tenant_id, c.id, c.rotation_strategy)
            for c in rows
            if (due := rotation_due_at(c)) is not None and due <= now
        ]


async def recently_failed(sessions: TenantSessions, credential_id: str, since: datetime) -> bool:
    """Whether the credential's latest rotation failed after ``since`` (the scheduler does
    not retry a failing automatic rotation every tick)."""
    async with sessions.read() as session:
        latest = await RotationRepository(session).latest_for(credential_id)
    if latest is None:
        return False
    if latest.status in (RotationStatus.PENDING, RotationStatus.VERIFYING):
        return True
    return latest.status is RotationStatus.FAILED and _aware(latest.started_at) > since


async def alert_due_external(sessions: TenantSessions, credential_id: str, now: datetime) -> bool:
    """``CredentialExpiring`` (reason ROTATION_DUE): an EXTERNAL credential's cadence has
    passed and a new version must be put into the vault. Once per current version (the
    audit log remembers); True when it was raised now."""
    async with sessions.write() as session:
        repo = RotationRepository(session)
        credential = await repo.lock_credential_skip_locked(credential_id)
        if credential is None:
            return False  # another replica holds it
        due = rotation_due_at(credential)
        if due is None or due > now:
            return False
        for event in await repo.events_about(credential.id, EventType.CREDENTIAL_EXPIRING.value):
            data = event.data or {}
            if (
                data.get("reason") == "ROTATION_DUE"
                and data.get("currentVersion") == credential.current_version
            ):
                return False
        emit_event(
            session,
            ActionContext.system(credential.tenant_id),
            type=EventType.CREDENTIAL_EXPIRING,
            subject_type="Credential",
            subject_id=credential.id,
            data={
                "reason": "ROTATION_DUE",
                "currentVersion": credential.current_version,
                "rotationDueAt": due.isoformat(),
                "daysLeft": days_left(due, now),
                "cadenceDays": credential.cadence_days,
                "newVersionNeeded": True,
            },
        )
        return True


__all__ = [
    "DEFAULT_LEASE",
    "ROTATION_TAG",
    "ExpiryAlert",
    "ExpiryAlertKind",
    "RotationResult",
    "alert_due_external",
    "alert_for",
    "due_credentials",
    "expiry_alerts",
    "newer_external_version",
    "recently_failed",
    "resolve_abandoned",
    "rotate_credential",
    "rotation_due_at",
    "set_rotation_policy",
    "warn_expiring",
]
