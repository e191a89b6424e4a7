"""Connections: a tenant's configured link to a provider, with live tests and recorded runs.

Governed actions (each audited through ``emit_event``):

- ``establish_connection``: the provider is visible to the tenant and not deprecated, it
  supports the auth mode, the credential is the tenant's and of that auth mode, the
  configuration satisfies the provider's JSON Schema and renders a URL the egress policy
  accepts, the inbound signing secret (optional) is one of the tenant's vault secrets, and the
  name is unique among the project's live connections. With ``run_test`` the provider's
  verification request runs live first. A passing (or skipped) test leaves an ACTIVE
  connection and ``IntegrationConnectionEstablished``. A failing test establishes nothing:
  the payload has no connection, the recorded run (``testRun``) and a
  ``CONNECTION_TEST_FAILED`` userError. The attempt is kept for diagnosis as a RETIRED
  connection (``retiredReason`` TEST_FAILED, reachable from the run's ``connectionId``)
  holding the run, with ``IntegrationConnectionTested`` and ``IntegrationFailureRaised``,
  but no list shows it. Establishing again creates a new connection.
- ``update_connection``: name, configuration and ``inboundSigningSecretRef``, checked as above;
  ``IntegrationConnectionUpdated`` with the names of the changed fields.
- ``run_connection_test`` (``testConnection``): one live TEST run, recorded with every
  attempt and the provider's request id as ``externalRef``; ``IntegrationConnectionTested``
  (and a failure with ``IntegrationFailureRaised`` when it fails). A failed test is a
  result, not a userError.
- ``retire_connection``: ``confirmName`` must equal the name; RETIRED is final
  (``IntegrationConnectionRetired``). Retired connections are never tested, probed or updated.

Provider calls never run inside a database transaction: an action reads in one short
session, calls the provider, then writes run, state and events in one transaction
(``TenantSessions``). ``call_provider`` and ``record_run`` are shared with rotations (which
verify a new credential version) and the health prober: every run is written by
``record_run``. Secrets are read from the vault at call time, at the credential's pinned
version (or the version under verification), and never leave ``ProviderCaller``.

Bad input is collected and raised together (``UserInputErrors``), with GraphQL input paths
as ``field``. Codes: ``REQUIRED``, ``TOO_LONG``, ``TOO_LARGE``, ``INVALID_PROJECT_ID``,
``PROVIDER_NOT_FOUND``, ``PROVIDER_DEPRECATED``, ``UNSUPPORTED_AUTH_MODE``,
``CREDENTIAL_NOT_FOUND``, ``AUTH_MODE_MISMATCH``, ``INVALID_CONFIGURATION``,
``EGRESS_REFUSED``, ``INVALID_SECRET_REF``, ``VAULT_MISMATCH``, ``SECRET_NOT_FOUND``,
``SECRET_VERSION_DISABLED``, ``DUPLICATE_NAME``, ``CONNECTION_NOT_FOUND``,
``CONNECTION_RETIRED``, ``CONFIRMATION_MISMATCH``, ``STALE_VERSION``, ``NOTHING_TO_UPDATE``,
``VALIDATION_TOO_COSTLY``.
An id of another tenant is reported exactly as an id that does not exist.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import (
    AuthMode,
    ConnectionStatus,
    FailureCategory,
    ProviderStatus,
    RunKind,
    RunStatus,
)
from studio_integrations.core.errors import UserInputError
from studio_integrations.core.ids import new_id, type_of
from studio_integrations.domain.credentials import check_secret_ref
from studio_integrations.domain.failures import record_failure
from studio_integrations.domain.health import HealthPolicy, observe_run
from studio_integrations.domain.json_schemas import (
    ValidationBudgetExceeded,
    linear_validator_for,
    unsupported_patterns,
    validate_off_loop,
)
from studio_integrations.domain.providers import VerificationRequest
from studio_integrations.domain.validation import ValidationErrors
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.outbound.egress import EgressRefused
from studio_integrations.outbound.provider_calls import (
    AuthScheme,
    CallOutcome,
    ConfigurationInvalid,
    CredentialAudience,
    ProviderCaller,
    ProviderRequest,
    ResolvedCredential,
)
from studio_integrations.persistence.connections import (
    TEST_FAILED_REASON,
    ConnectionFilter,
    ConnectionRepository,
    ConnectionSort,
    HealthRepository,
    RunRepository,
)
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.persistence.models import (
    ConnectionHealth,
    Credential,
    HealthSnapshot,
    IntegrationConnection,
    IntegrationRun,
    Provider,
    RunAttempt,
)
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository
from studio_integrations.vault.base import (
    SecretNotFound,
    SecretStore,
    VaultAccessDenied,
    VaultUnavailable,
    parse_secret_ref,
)

MAX_NAME_LENGTH = 200
MAX_PROJECT_ID_LENGTH = 100
MAX_SEARCH_LENGTH = 200
MAX_CONFIGURATION_BYTES = 16 * 1024
MAX_CONFIGURATION_DEPTH = 16
MAX_CONFIGURATION_ERRORS = 10
# How many runs a connection list shows per connection (``runs(first:)`` in a list).
MAX_RUNS_PER_CONNECTION = 100
PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
TEST_FAILED: Final = TEST_FAILED_REASON


class _Keep:
    """``update_connection``: leave this field as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


@dataclass(frozen=True, slots=True)
class ConnectionDefinition:
    provider_id: str
    name: str
    project_id: str
    auth_mode: AuthMode
    credential_id: str
    configuration: Any = None
    inbound_signing_secret_ref: str | None = None
    run_test: bool = True
    # The caller holds credentials:write: binding outside the credential's audience widens it.
    may_widen_credential_audience: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionChanges:
    id: str
    name: str | _Keep = KEEP
    configuration: Any = KEEP
    inbound_signing_secret_ref: str | _Keep | None = KEEP
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything one provider call needs, read before the call (no ORM objects cross the
    call: they belong to the session that read them)."""

    connection_id: str
    request: ProviderRequest
    auth_mode: AuthMode
    secret_name: str
    secret_version: str
    provider_id: str | None = None
    audience: CredentialAudience | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """A governed action's outcome with the run it recorded; ``error`` is the userError to
    show (the action's effects are kept: the run happened)."""

    connection: IntegrationConnection | None
    run: IntegrationRun | None
    error: UserInputError | None = None


# --- Validation --------------------------------------------------------------------------


def _depth(doc: Any, limit: int) -> int:
    depth = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, level = stack.pop()
        depth = max(depth, level)
        if depth > limit:
            break
        if isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, level + 1) for v in value)
    return depth


async def check_configuration(
    errors: ValidationErrors, field: str, provider: Provider, configuration: Any
) -> dict[str, Any] | None:
    """A JSON object within the size limits that satisfies the provider's JSON Schema; every
    schema violation (up to ten) is reported at its own path. The schema is the tenant's own
    input: it is evaluated in linear time (RE2 patterns) in the schema worker pool, within a
    budget, never on the event loop (``json_schemas``)."""
    config = {} if configuration is None else configuration
    if not isinstance(config, dict):
        errors.add(field, "INVALID_CONFIGURATION", "must be a JSON object")
        return None
    if _depth(config, MAX_CONFIGURATION_DEPTH) > MAX_CONFIGURATION_DEPTH:
        errors.add(
            field, "TOO_LARGE", f"must not nest deeper than {MAX_CONFIGURATION_DEPTH} levels"
        )
        return None
    if len(json.dumps(config, separators=(",", ":"))) > MAX_CONFIGURATION_BYTES:
        errors.add(field, "TOO_LARGE", f"must be at most {MAX_CONFIGURATION_BYTES} bytes as JSON")
        return None
    schema = provider.configuration_schema or {}
    try:
        found = await validate_off_loop(functools.partial(_schema_errors, schema, config))
    except ValidationBudgetExceeded:
        errors.add(
            field,
            "VALIDATION_TOO_COSTLY",
            "checking the configuration against the provider's schema took too long",
        )
        return None
    except (SchemaError, Unresolvable, RecursionError):
        found = None
    if found is None:
        errors.add(
            field, "INVALID_CONFIGURATION", "the provider's configuration schema is unusable"
        )
        return None
    for error in found[:MAX_CONFIGURATION_ERRORS]:
        where = ".".join(str(p) for p in error.absolute_path)
        errors.add(
            f"{field}.{where}" if where else field, "INVALID_CONFIGURATION", error.message[:300]
        )
    return None if found else config


def _schema_errors(schema: dict[str, Any], config: dict[str, Any]) -> list[Any] | None:
    """Runs in the schema worker pool: the violations sorted by path, ``None`` for a schema
    that cannot be evaluated safely."""
    if unsupported_patterns(schema):
        return None
    validator_class = linear_validator_for(schema)
    return sorted(
        validator_class(schema).iter_errors(config),
        key=lambda e: [str(p) for p in e.absolute_path],
    )


def verification_request(provider: Provider, configuration: Mapping[str, Any]) -> ProviderRequest:
    """The provider's verification call for one connection's configuration. Raises
    ``ConfigurationInvalid`` when the provider's stored auth scheme is unusable."""
    verification = VerificationRequest.from_document(provider.verification)
    try:
        auth = AuthScheme.from_mapping(provider.auth_scheme)
    except ValueError as exc:
        raise ConfigurationInvalid(f"the provider's auth scheme is invalid: {exc}") from None
    return ProviderRequest(
        base_url=provider.base_url,
        path=verification.path,
        method=verification.method,
        expect_status=verification.expect_status,
        configuration=configuration,
        auth=auth,
    )


def _check_target(
    errors: ValidationErrors,
    caller: ProviderCaller,
    provider: Provider,
    configuration: dict[str, Any],
    field: str,
) -> str | None:
    """The rendered URL must be one the egress policy accepts (no network involved); its
    host, or None with the reason in ``errors``."""
    try:
        return caller.prepare_target(
            verification_request(provider, configuration), field_prefix=f"{field}."
        ).host
    except EgressRefused as exc:
        errors.add(field, exc.code, exc.message)
    except ConfigurationInvalid as exc:
        errors.add(exc.field or field, exc.code, exc.message)
    return None


async def _check_inbound_ref(
    errors: ValidationErrors, vault: SecretStore, ctx: ActionContext, raw: str, field: str
) -> str | None:
    checked = await check_secret_ref(errors, vault, ctx.tenant_id, raw, field)
    return None if checked is None else str(checked[0])


def _text(errors: ValidationErrors, field: str, value: str | None, limit: int) -> str | None:
    text = (value or "").strip()
    if not text:
        errors.add(field, "REQUIRED", "must not be blank")
        return None
    if len(text) > limit:
        errors.add(field, "TOO_LONG", f"must be at most {limit} characters")
        return None
    return text


async def _get(session: AsyncSession, model: type[Any], id_: str, type_name: str) -> Any:
    """A row by id, or None for an id of another type (never a query for it)."""
    if not id_ or type_of(id_) != type_name:
        return None
    return await TenantRepository(session, model).get(id_)


def _plan(
    connection_id: str,
    provider: Provider,
    configuration: Mapping[str, Any],
    credential: Credential,
    version: str | None = None,
    audience: list[str] | None = None,
) -> CallPlan | ConfigurationInvalid:
    try:
        request = verification_request(provider, configuration)
        secret_name = parse_secret_ref(credential.key_vault_ref).name
    except (ConfigurationInvalid, UserInputError) as exc:
        return ConfigurationInvalid(exc.message)
    return CallPlan(
        connection_id=connection_id,
        request=request,
        auth_mode=credential.auth_mode,
        secret_name=secret_name,
        secret_version=version or credential.current_version,
        provider_id=provider.id,
        audience=CredentialAudience.of(credential.audience if audience is None else audience),
    )


# --- Calls and runs ----------------------------------------------------------------------


def failed_outcome(category: FailureCategory, message: str) -> CallOutcome:
    """An outcome for a call that could not be made at all (nothing was sent)."""
    return CallOutcome(
        ok=False,
        status=None,
        latency_ms=None,
        attempts=(),
        external_ref=None,
        category=category,
        message=message,
    )


async def call_provider(
    caller: ProviderCaller, vault: SecretStore, plan: CallPlan | ConfigurationInvalid
) -> CallOutcome:
    """Resolve the planned secret version from the vault and make the call. Never raises for
    what the vault, the network or the provider do: it is all in the outcome."""
    if isinstance(plan, ConfigurationInvalid):
        return failed_outcome(FailureCategory.CONFIGURATION, plan.message)
    try:
        secret = await vault.get_secret(plan.secret_name, plan.secret_version)
    except SecretNotFound:
        return failed_outcome(
            FailureCategory.CONFIGURATION,
            f"version {plan.secret_version} of the credential's secret is not in the vault",
        )
    except VaultAccessDenied:
        return failed_outcome(
            FailureCategory.CONFIGURATION,
            f"the vault refused to give version {plan.secret_version} of the credential's "
            "secret (disabled, or no access)",
        )
    except VaultUnavailable:
        return failed_outcome(FailureCategory.UNKNOWN, "the vault did not answer")
    return await caller.call(
        plan.request,
        ResolvedCredential(
            plan.auth_mode, secret, audience=plan.audience, provider_id=plan.provider_id
        ),
    )


async def record_run(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    policy: HealthPolicy,
    connection_id: str,
    kind: RunKind,
    outcome: CallOutcome,
    credential_version: str | None,
    started_at: datetime,
    rotation_id: str | None = None,
) -> IntegrationRun:
    """Write a finished run with its attempts, and an ``IntegrationFailure`` (with its
    event) when it failed. The one place runs are written."""
    run = IntegrationRun(
        id=new_id("IntegrationRun"),
        tenant_id=ctx.tenant_id,
        connection_id=connection_id,
        rotation_id=rotation_id,
        kind=kind,
        status=RunStatus.SUCCEEDED if outcome.ok else RunStatus.FAILED,
        credential_version=credential_version,
        external_ref=outcome.external_ref,
        http_status=outcome.status,
        latency_ms=outcome.latency_ms,
        error_category=outcome.category,
        error_message=outcome.message,
        triggered_by=ctx.actor.subject,
        started_at=started_at,
        finished_at=utcnow(),
        trace_id=ctx.trace_id,
    )
    session.add(run)
    await session.flush()  # before its attempts (no ORM relationships order them)
    for attempt in outcome.attempts:
        session.add(
            RunAttempt(
                id=new_id("RunAttempt"),
                tenant_id=ctx.tenant_id,
                run_id=run.id,
                number=attempt.number,
                started_at=attempt.started_at,
                latency_ms=attempt.latency_ms,
                http_status=attempt.http_status,
                error_category=attempt.category,
                error_message=attempt.message,
                external_ref=attempt.external_ref,
                address=attempt.address,
                response_excerpt=attempt.response_excerpt,
            )
        )
    await session.flush()
    if not outcome.ok:
        await record_failure(
            session,
            ctx,
            policy=policy,
            category=outcome.category or FailureCategory.UNKNOWN,
            message=outcome.message or "the call failed",
            connection_id=connection_id,
            run_id=run.id,
        )
    await observe_run(
        session, ctx, run, policy=policy
    )  # every run is a health signal (domain.health)
    return run


def _run_data(run: IntegrationRun) -> dict[str, Any]:
    return {
        "runId": run.id,
        "kind": run.kind.value,
        "status": run.status.value,
        "httpStatus": run.http_status,
        "latencyMs": run.latency_ms,
        "errorCategory": run.error_category.value if run.error_category else None,
        "externalRef": run.external_ref,
        "credentialVersion": run.credential_version,
    }


def _connection_data(connection: IntegrationConnection) -> dict[str, Any]:
    return {
        "name": connection.name,
        "projectId": connection.project_id,
        "providerId": connection.provider_id,
        "authMode": connection.auth_mode.value,
        "credentialId": connection.credential_id,
        "status": connection.status.value,
        "configuration": connection.configuration,
        "inboundSigningSecretRef": connection.inbound_signing_secret_ref,
    }


# --- Governed actions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Checked:
    name: str
    project_id: str
    provider_id: str
    auth_mode: AuthMode
    credential_id: str
    configuration: dict[str, Any]
    inbound_ref: str | None
    plan: CallPlan | ConfigurationInvalid | None
    widen_audience: str | None = None  # a provider id added to the credential's audience


async def _check_definition(
    session: AsyncSession,
    caller: ProviderCaller,
    definition: ConnectionDefinition,
    connection_id: str,
    inbound: tuple[str | None, ValidationErrors],
) -> _Checked:
    """``inbound`` is the signing secret reference as checked against the vault beforehand
    (``_check_inbound_ref``), with its errors."""
    errors = ValidationErrors()
    name = _text(errors, "input.name", definition.name, MAX_NAME_LENGTH)
    project_id = _text(errors, "input.projectId", definition.project_id, MAX_PROJECT_ID_LENGTH)
    if project_id is not None and not PROJECT_ID.match(project_id):
        errors.add(
            "input.projectId",
            "INVALID_PROJECT_ID",
            "letters, digits and . _ : - (starting with a letter or digit)",
        )
        project_id = None

    provider: Provider | None = await _get(session, Provider, definition.provider_id, "Provider")
    if provider is None:
        errors.add("input.providerId", "PROVIDER_NOT_FOUND", "no such provider")
    elif provider.status is ProviderStatus.DEPRECATED:
        errors.add(
            "input.providerId", "PROVIDER_DEPRECATED", "new connections to it cannot be made"
        )
    elif definition.auth_mode.value not in provider.auth_modes:
        errors.add(
            "input.authMode",
            "UNSUPPORTED_AUTH_MODE",
            f"{provider.name} supports {', '.join(provider.auth_modes)}",
        )

    credential: Credential | None = await _get(
        session, Credential, definition.credential_id, "Credential"
    )
    if credential is None:
        errors.add("input.credentialId", "CREDENTIAL_NOT_FOUND", "no such credential")
    elif credential.auth_mode is not definition.auth_mode:
        errors.add(
            "input.credentialId",
            "AUTH_MODE_MISMATCH",
            f"the credential is for {credential.auth_mode.value}, not {definition.auth_mode.value}",
        )

    configuration = None
    host = None
    if provider is not None:
        configuration = await check_configuration(
            errors, "input.configuration", provider, definition.configuration
        )
        if configuration is not None:
            host = _check_target(errors, caller, provider, configuration, "input.configuration")
    widen = None
    if provider is not None and credential is not None and host is not None:
        audience = CredentialAudience.of(credential.audience)
        if not audience.allows(provider.id, host):
            if definition.may_widen_credential_audience:
                widen = provider.id
            else:
                errors.add(
                    "input.credentialId",
                    "CREDENTIAL_AUDIENCE",
                    f"the credential may not be sent to {provider.name} ({host}); a caller "
                    "with credentials:write can bind it there, which widens its audience",
                )

    inbound_ref, inbound_errors = inbound
    errors.items.extend(inbound_errors.items)

    if (
        name is not None
        and project_id is not None
        and await ConnectionRepository(session).live_with_name(project_id, name)
    ):
        errors.add("input.name", "DUPLICATE_NAME", "the project has a live connection of this name")
    errors.raise_any()
    assert name
    assert project_id
    assert provider
    assert credential
    assert configuration is not None
    if widen is not None:
        # The test call runs under the audience the binding will have.
        credential_audience = sorted({*(credential.audience or []), widen})
    else:
        credential_audience = list(credential.audience or [])
    plan = (
        _plan(connection_id, provider, configuration, credential, audience=credential_audience)
        if definition.run_test
        else None
    )
    return _Checked(
        name=name,
        project_id=project_id,
        provider_id=provider.id,
        auth_mode=definition.auth_mode,
        credential_id=credential.id,
        configuration=configuration,
        inbound_ref=inbound_ref,
        plan=plan,
        widen_audience=widen,
    )


async def establish_connection(
    sessions: TenantSessions,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    caller: ProviderCaller,
    policy: HealthPolicy,
    definition: ConnectionDefinition,
) -> RunResult:
    connection_id = new_id("IntegrationConnection")
    # The vault is asked before a session opens: no transaction waits on it (on SQLite the
    # local vault's own session would otherwise wait for this one's lock until it timed out).
    inbound_errors = ValidationErrors()
    inbound_ref = (
        await _check_inbound_ref(
            inbound_errors,
            vault,
            ctx,
            definition.inbound_signing_secret_ref,
            "input.inboundSigningSecretRef",
        )
        if definition.inbound_signing_secret_ref is not None
        else None
    )
    async with sessions.read() as session:
        checked = await _check_definition(
            session, caller, definition, connection_id, (inbound_ref, inbound_errors)
        )

    outcome: CallOutcome | None = None
    started_at = utcnow()
    if checked.plan is not None:
        outcome = await call_provider(caller, vault, checked.plan)

    async with sessions.write() as session:
        # The name may have been taken while the test ran.
        if await ConnectionRepository(session).live_with_name(checked.project_id, checked.name):
            raise UserInputError(
                "the project has a live connection of this name",
                field="input.name",
                code="DUPLICATE_NAME",
            )
        failed = outcome is not None and not outcome.ok
        widened = None
        if checked.widen_audience is not None and not failed:
            widened = await _widen_audience(session, checked.credential_id, checked.widen_audience)
        now = utcnow()
        connection = IntegrationConnection(
            id=connection_id,
            tenant_id=ctx.tenant_id,
            project_id=checked.project_id,
            provider_id=checked.provider_id,
            name=checked.name,
            status=ConnectionStatus.RETIRED if failed else ConnectionStatus.ACTIVE,
            auth_mode=checked.auth_mode,
            credential_id=checked.credential_id,
            configuration=checked.configuration,
            inbound_signing_secret_ref=checked.inbound_ref,
            created_by=ctx.actor.subject,
            retired_at=now if failed else None,
            retired_reason=TEST_FAILED if failed else None,
        )
        session.add(connection)
        await session.flush()  # no ORM relationships: children are flushed after the parent
        if not failed:
            # The prober's work item: due at once, so the first probe follows establishment.
            session.add(
                ConnectionHealth(
                    connection_id=connection_id, tenant_id=ctx.tenant_id, next_probe_at=now
                )
            )
        await session.flush()
        run = None
        if outcome is not None:
            assert checked.plan is not None
            run = await record_run(
                session,
                ctx,
                connection_id=connection_id,
                kind=RunKind.TEST,
                outcome=outcome,
                credential_version=getattr(checked.plan, "secret_version", None),
                started_at=started_at,
                policy=policy,
            )
        if failed:
            assert run is not None
            assert outcome is not None
            category = (outcome.category or FailureCategory.UNKNOWN).value
            emit_event(
                session,
                ctx,
                type=EventType.INTEGRATION_CONNECTION_TESTED,
                subject_type="IntegrationConnection",
                subject_id=connection_id,
                data={
                    **_run_data(run),
                    "phase": "ESTABLISH",
                    "connection": _connection_data(connection),
                },
            )
            error = UserInputError(
                f"the connection test failed ({category}): {outcome.message or 'no detail'}; "
                "nothing was established",
                field="input.runTest",
                code="CONNECTION_TEST_FAILED",
            )
            return RunResult(connection=None, run=run, error=error)
        emit_event(
            session,
            ctx,
            type=EventType.INTEGRATION_CONNECTION_ESTABLISHED,
            subject_type="IntegrationConnection",
            subject_id=connection_id,
            data={
                **_connection_data(connection),
                "testRun": _run_data(run) if run else None,
                **({"credentialAudienceWidened": widened} if widened else {}),
            },
        )
        return RunResult(connection=connection, run=run)


async def _widen_audience(
    session: AsyncSession, credential_id: str, provider_id: str
) -> dict[str, Any] | None:
    """Add ``provider_id`` to the credential's audience; what changed, for the audit trail."""
    credential = await TenantRepository(session, Credential).get(credential_id)
    if credential is None:
        raise UserInputError(
            "no such credential", field="input.credentialId", code="CREDENTIAL_NOT_FOUND"
        )
    before = list(credential.audience or [])
    if provider_id in before:
        return None
    credential.audience = sorted({*before, provider_id})
    await session.flush()
    return {"credentialId": credential_id, "added": [provider_id], "audience": credential.audience}


async def _live_connection(
    session: AsyncSession, id_: str, expected_version: int | None = None
) -> IntegrationConnection:
    connection: IntegrationConnection | None = await _get(
        session, IntegrationConnection, id_, "IntegrationConnection"
    )
    if connection is None:
        raise UserInputError("no such connection", field="input.id", code="CONNECTION_NOT_FOUND")
    if connection.status is ConnectionStatus.RETIRED:
        raise UserInputError(
            "the connection is retired", field="input.id", code="CONNECTION_RETIRED"
        )
    if expected_version is not None and connection.version != expected_version:
        raise UserInputError(
            f"the connection changed since you read it (now version {connection.version})",
            field="input.version",
            code="STALE_VERSION",
        )
    return connection


async def update_connection(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    caller: ProviderCaller,
    changes: ConnectionChanges,
) -> IntegrationConnection:
    # The vault is asked before the first statement, so the transaction is not held open
    # while it answers (on SQLite the local vault's own session would wait for its lock).
    inbound_errors = ValidationErrors()
    raw_ref = changes.inbound_signing_secret_ref
    clear_ref = not isinstance(raw_ref, _Keep) and (raw_ref is None or not raw_ref.strip())
    checked_ref = (
        await _check_inbound_ref(
            inbound_errors, vault, ctx, raw_ref, "input.inboundSigningSecretRef"
        )
        if isinstance(raw_ref, str) and not clear_ref
        else None
    )
    connection = await _live_connection(session, changes.id, changes.expected_version)
    errors = ValidationErrors()
    changed: dict[str, Any] = {}
    if not isinstance(changes.name, _Keep):
        name = _text(errors, "input.name", changes.name, MAX_NAME_LENGTH)
        if name is not None and name != connection.name:
            other = await ConnectionRepository(session).live_with_name(connection.project_id, name)
            if other is not None and other.id != connection.id:
                errors.add(
                    "input.name",
                    "DUPLICATE_NAME",
                    "the project has a live connection of this name",
                )
            else:
                changed["name"] = name
    if not isinstance(changes.configuration, _Keep):
        provider = await TenantRepository(session, Provider).get(connection.provider_id)
        assert provider is not None  # providers are never deleted
        configuration = await check_configuration(
            errors, "input.configuration", provider, changes.configuration
        )
        if configuration is not None:
            _check_target(errors, caller, provider, configuration, "input.configuration")
            if configuration != connection.configuration:
                changed["configuration"] = configuration
    if not isinstance(raw_ref, _Keep):
        errors.items.extend(inbound_errors.items)
        if (
            checked_ref is not None or clear_ref
        ) and checked_ref != connection.inbound_signing_secret_ref:
            changed["inbound_signing_secret_ref"] = checked_ref
    errors.raise_any()
    if not changed:
        raise UserInputError(
            "nothing to change: give a new name, configuration or inboundSigningSecretRef",
            field="input",
            code="NOTHING_TO_UPDATE",
        )
    for attr, value in changed.items():
        setattr(connection, attr, value)
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.INTEGRATION_CONNECTION_UPDATED,
        subject_type="IntegrationConnection",
        subject_id=connection.id,
        data={
            "changed": sorted(_camel(k) for k in changed),
            "connection": _connection_data(connection),
        },
    )
    return connection


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


async def plan_for(
    session: AsyncSession, connection: IntegrationConnection
) -> CallPlan | ConfigurationInvalid:
    """The verification call of a connection (tests and probes alike), from its provider,
    configuration and credential; ``ConfigurationInvalid`` when it cannot be made."""
    provider = await TenantRepository(session, Provider).get(connection.provider_id)
    assert provider is not None
    credential = (
        await TenantRepository(session, Credential).get(connection.credential_id)
        if connection.credential_id
        else None
    )
    if credential is None:
        return ConfigurationInvalid("the connection has no credential bound")
    return _plan(connection.id, provider, connection.configuration, credential)


async def run_connection_test(
    sessions: TenantSessions,
    ctx: ActionContext,
    *,
    vault: SecretStore,
    caller: ProviderCaller,
    policy: HealthPolicy,
    connection_id: str,
) -> RunResult:
    async with sessions.read() as session:
        connection = await _live_connection(session, connection_id)
        plan = await plan_for(session, connection)
    started_at = utcnow()
    outcome = await call_provider(caller, vault, plan)
    async with sessions.write() as session:
        connection = await _get(
            session, IntegrationConnection, connection_id, "IntegrationConnection"
        )
        if connection is None:  # deleted while the call ran (tenant data is never deleted)
            raise UserInputError(
                "no such connection", field="input.id", code="CONNECTION_NOT_FOUND"
            )
        run = await record_run(
            session,
            ctx,
            connection_id=connection.id,
            kind=RunKind.TEST,
            outcome=outcome,
            credential_version=plan.secret_version if isinstance(plan, CallPlan) else None,
            started_at=started_at,
            policy=policy,
        )
        emit_event(
            session,
            ctx,
            type=EventType.INTEGRATION_CONNECTION_TESTED,
            subject_type="IntegrationConnection",
            subject_id=connection.id,
            data=_run_data(run),
        )
        return RunResult(connection=connection, run=run)


async def retire_connection(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    connection_id: str,
    confirm_name: str,
    expected_version: int | None = None,
) -> IntegrationConnection:
    connection = await _live_connection(session, connection_id, expected_version)
    if (confirm_name or "").strip() != connection.name:
        raise UserInputError(
            "type the connection's name exactly to retire it",
            field="input.confirmName",
            code="CONFIRMATION_MISMATCH",
        )
    connection.status = ConnectionStatus.RETIRED
    connection.retired_at = utcnow()
    connection.retired_reason = "RETIRED_BY_OPERATOR"
    await session.flush()
    emit_event(
        session,
        ctx,
        type=EventType.INTEGRATION_CONNECTION_RETIRED,
        subject_type="IntegrationConnection",
        subject_id=connection.id,
        data={"name": connection.name, "projectId": connection.project_id},
    )
    return connection


# --- Queries -----------------------------------------------------------------------------


async def list_connections(
    session: AsyncSession, flt: ConnectionFilter, sort: ConnectionSort, page: PageRequest
) -> Page[IntegrationConnection]:
    errors = ValidationErrors()
    if flt.search is not None and len(flt.search) > MAX_SEARCH_LENGTH:
        errors.add("filter.search", "TOO_LONG", f"must be at most {MAX_SEARCH_LENGTH} characters")
    if flt.project_id is not None and len(flt.project_id) > MAX_PROJECT_ID_LENGTH:
        errors.add(
            "filter.projectId", "TOO_LONG", f"must be at most {MAX_PROJECT_ID_LENGTH} characters"
        )
    errors.raise_any()
    return await ConnectionRepository(session).search(flt, sort, page)


async def latest_runs(
    session: AsyncSession, connection_ids: Sequence[str], limit: int
) -> dict[str, list[IntegrationRun]]:
    return await RunRepository(session).latest_for_connections(connection_ids, limit)


async def runs_page(
    session: AsyncSession, connection_id: str, page: PageRequest
) -> Page[IntegrationRun]:
    return await RunRepository(session).page_for_connection(connection_id, page)


async def attempts_for_runs(
    session: AsyncSession, run_ids: Sequence[str]
) -> dict[str, list[RunAttempt]]:
    return await RunRepository(session).attempts_for_runs(run_ids)


async def health_for_connections(
    session: AsyncSession, connection_ids: Sequence[str]
) -> dict[str, ConnectionHealth]:
    return await HealthRepository(session).for_connections(connection_ids)


async def health_timelines(
    session: AsyncSession,
    connection_ids: Sequence[str],
    start: datetime | None,
    end: datetime | None,
) -> dict[str, list[HealthSnapshot]]:
    if start is not None and end is not None and start >= end:
        raise UserInputError("from must be before to", field="from", code="INVALID_RANGE")
    return await HealthRepository(session).timelines(connection_ids, start, end)
