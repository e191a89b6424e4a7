"""Connection, run and health types, and the connection inputs and payloads.

Nested lists (provider, credential, health, runs, attempts, timeline) resolve through the
request's DataLoaders, so a page of connections costs a fixed number of SQL statements.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

import studio_integrations.schema.enums  # noqa: F401  (registers the shared enums)
from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.core.enums import (
    AuthMode,
    CircuitState,
    ConnectionStatus,
    FailureCategory,
    HealthStatus,
    ProviderCategory,
    RunKind,
    RunStatus,
)
from studio_integrations.core.errors import NotFound
from studio_integrations.domain import connections as domain
from studio_integrations.persistence import connections as persistence
from studio_integrations.persistence.models import ConnectionHealth as HealthRow
from studio_integrations.persistence.models import Credential as CredentialRow
from studio_integrations.persistence.models import HealthSnapshot as SnapshotRow
from studio_integrations.persistence.models import IntegrationConnection as ConnectionRow
from studio_integrations.persistence.models import IntegrationRun as RunRow
from studio_integrations.persistence.models import Provider as ProviderRow
from studio_integrations.persistence.models import RunAttempt as AttemptRow
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, Page, PageRequest
from studio_integrations.resolvers import loaders
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError
from studio_integrations.schema.observability import TRACE_ID_DOC, TRACE_URL_DOC, trace_url
from studio_integrations.schema.providers import Provider
from studio_integrations.schema.relay import Connection, Node

if TYPE_CHECKING:
    from studio_integrations.schema.credentials import Credential

ConnectionSortField = strawberry.enum(
    persistence.ConnectionSortField, description="What a connection list is sorted by."
)


@strawberry.enum
class SortDirection(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


# --- Runs --------------------------------------------------------------------------------


@strawberry.type(description="One HTTP exchange of a run (or the failure to have one).")
class RunAttempt:
    number: int
    started_at: datetime
    latency_ms: float | None
    http_status: int | None
    error_category: FailureCategory | None = strawberry.field(
        description="Null when the attempt succeeded."
    )
    error_message: str | None
    external_ref: str | None = strawberry.field(
        description="The provider's request id for this attempt, when it sent one."
    )
    address: str | None = strawberry.field(
        description="The IP address the request went to (after the egress check)."
    )
    response_excerpt: str | None = strawberry.field(
        description="The start of a failed answer's body, scrubbed of secrets."
    )

    @classmethod
    def from_row(cls, row: AttemptRow) -> RunAttempt:
        return cls(
            number=row.number,
            started_at=row.started_at,
            latency_ms=row.latency_ms,
            http_status=row.http_status,
            error_category=row.error_category,
            error_message=row.error_message,
            external_ref=row.external_ref,
            address=row.address,
            response_excerpt=row.response_excerpt,
        )


@strawberry.type(
    description="A call to a provider on a connection's behalf: a test, a health probe, a "
    "rotation's verification or an operation, with every attempt."
)
class IntegrationRun(Node):
    connection_id: strawberry.ID
    kind: RunKind
    status: RunStatus
    credential_version: str | None = strawberry.field(
        description="The credential version the run used (never the secret)."
    )
    external_ref: str | None = strawberry.field(
        description="The provider's request id of the final attempt."
    )
    http_status: int | None = strawberry.field(description="The final attempt's HTTP status.")
    latency_ms: float | None = strawberry.field(description="The final attempt's latency.")
    error_category: FailureCategory | None
    error_message: str | None
    rotation_id: strawberry.ID | None
    triggered_by: str | None
    started_at: datetime
    finished_at: datetime | None
    trace_id: str | None = strawberry.field(default=None, description=TRACE_ID_DOC)

    @strawberry.field(description=TRACE_URL_DOC)
    def trace_url(self, info: Info) -> str | None:
        return trace_url(info, self.trace_id)

    @strawberry.field(description="Every attempt, in order.")
    async def attempts(self, info: Info) -> list[RunAttempt]:
        rows = await info.context.loaders.load(loaders.attempts_by_run, str(self.id))
        return [RunAttempt.from_row(r) for r in rows]

    @classmethod
    def from_row(cls, row: RunRow) -> IntegrationRun:
        return cls(
            id=strawberry.ID(row.id),
            connection_id=strawberry.ID(row.connection_id),
            kind=row.kind,
            status=row.status,
            credential_version=row.credential_version,
            external_ref=row.external_ref,
            http_status=row.http_status,
            latency_ms=row.latency_ms,
            error_category=row.error_category,
            error_message=row.error_message,
            rotation_id=strawberry.ID(row.rotation_id) if row.rotation_id else None,
            triggered_by=row.triggered_by,
            trace_id=row.trace_id,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


IntegrationRunConnection = Connection[IntegrationRun]


# --- Health ------------------------------------------------------------------------------


@strawberry.type(description="A connection's current health (DESIGN §8).")
class ConnectionHealthState:
    status: HealthStatus
    circuit_state: CircuitState
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float
    consecutive_failures: int
    checked_at: datetime | None
    next_probe_at: datetime | None

    @classmethod
    def from_row(cls, row: HealthRow) -> ConnectionHealthState:
        return cls(
            status=row.status,
            circuit_state=row.circuit_state,
            latency_p50_ms=row.latency_p50_ms,
            latency_p95_ms=row.latency_p95_ms,
            error_rate=row.error_rate,
            consecutive_failures=row.consecutive_failures,
            checked_at=row.checked_at,
            next_probe_at=row.next_probe_at,
        )


@strawberry.type(description="A connection's health at one moment: a point of its timeline.")
class HealthSnapshot:
    status: HealthStatus
    circuit_state: CircuitState
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float
    checked_at: datetime

    @classmethod
    def from_row(cls, row: SnapshotRow) -> HealthSnapshot:
        return cls(
            status=row.status,
            circuit_state=row.circuit_state,
            latency_p50_ms=row.latency_p50_ms,
            latency_p95_ms=row.latency_p95_ms,
            error_rate=row.error_rate,
            checked_at=row.checked_at,
        )


# --- Connections -------------------------------------------------------------------------


@strawberry.type(description="Which of its own actions the viewer may perform on a connection.")
class ConnectionViewerCan:
    test: bool = strawberry.field(description="False for a retired connection.")
    update: bool = strawberry.field(description="False for a retired connection.")
    retire: bool = strawberry.field(description="False once retired: retirement is final.")


def _provider_of(row: ProviderRow | None) -> Provider:
    if row is None:  # providers are never deleted
        raise NotFound("the connection's provider is not visible")
    return Provider.from_row(row)


def _credential_of(row: CredentialRow | None) -> Credential | None:
    from studio_integrations.schema.credentials import Credential

    return None if row is None else Credential.from_row(row)


def _health_of(row: HealthRow | None) -> ConnectionHealthState | None:
    return None if row is None or row.checked_at is None else ConnectionHealthState.from_row(row)


@strawberry.type(description="A tenant's configured link to a provider.")
class IntegrationConnection(Node):
    name: str
    project_id: strawberry.ID
    provider_id: strawberry.ID
    status: ConnectionStatus
    auth_mode: AuthMode
    configuration: JSON = strawberry.field(
        description="Non-secret settings, valid against the provider's configuration schema."
    )
    inbound_signing_secret_ref: str | None = strawberry.field(
        description="Vault reference of the secret the provider signs its webhooks to us with."
    )
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None
    retired_reason: str | None = strawberry.field(
        description="RETIRED_BY_OPERATOR, or TEST_FAILED when establishing failed its test."
    )
    version: int = strawberry.field(
        description="Optimistic-concurrency version: pass it to updates to refuse stale writes."
    )
    credential_id: strawberry.Private[str | None]

    provider: Provider = loaders.loaded_field(
        loaders.rows_by_id(ProviderRow),
        key=lambda connection: str(connection.provider_id),
        convert=_provider_of,
    )
    credential: (
        Annotated[Credential, strawberry.lazy("studio_integrations.schema.credentials")] | None
    ) = loaders.loaded_field(
        loaders.rows_by_id(CredentialRow),
        key=lambda connection: connection.credential_id,
        convert=_credential_of,
        description="The bound credential: its reference and metadata, never its value. "
        "Requires `credentials:read`.",
        extensions=requires(Scope.CREDENTIALS_READ),
    )
    health: ConnectionHealthState | None = loaders.loaded_field(
        loaders.health_by_connection,
        key=lambda connection: str(connection.id),
        convert=_health_of,
        description="Current health; null until the first check.",
    )

    @strawberry.field(
        description="Health snapshots in [from, to), oldest first (at most the newest 1000)."
    )
    async def health_timeline(
        self,
        info: Info,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> list[HealthSnapshot]:
        rows = await info.context.loaders.load(loaders.health_timeline, (str(self.id), from_, to))
        return [HealthSnapshot.from_row(r) for r in rows]

    @strawberry.field(description="Runs of every kind, newest first, with their attempts.")
    async def runs(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> IntegrationRunConnection:
        request = PageRequest(first=first, after=after)
        if after is None:  # the list view's shape: batched across connections
            rows = await info.context.loaders.load(loaders.latest_runs, (str(self.id), first + 1))
            page: Page[Any] = Page(
                items=rows[:first], has_next_page=len(rows) > first, has_previous_page=False
            )
        else:
            async with info.context.read() as session:
                page = await domain.runs_page(session, str(self.id), request)
        return IntegrationRunConnection.from_page(page, IntegrationRun.from_row)

    @strawberry.field
    def viewer_can(self, info: Info) -> ConnectionViewerCan:
        principal = info.context.require_principal()
        live = self.status is not ConnectionStatus.RETIRED
        return ConnectionViewerCan(
            test=live and principal.has(ACTION_SCOPES["testConnection"]),
            update=live and principal.has(ACTION_SCOPES["updateConnection"]),
            retire=live and principal.has(ACTION_SCOPES["retireConnection"]),
        )

    @classmethod
    def from_row(cls, row: ConnectionRow) -> IntegrationConnection:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            project_id=strawberry.ID(row.project_id),
            provider_id=strawberry.ID(row.provider_id),
            status=row.status,
            auth_mode=row.auth_mode,
            configuration=cast(JSON, row.configuration),
            inbound_signing_secret_ref=row.inbound_signing_secret_ref,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            retired_at=row.retired_at,
            retired_reason=row.retired_reason,
            version=row.version,
            credential_id=row.credential_id,
        )


IntegrationConnectionConnection = Connection[IntegrationConnection]


# --- Inputs ------------------------------------------------------------------------------


@strawberry.input(description="Narrow the connection list. All given conditions must hold.")
class IntegrationConnectionFilter:
    provider_category: ProviderCategory | None = None
    status: ConnectionStatus | None = None
    project_id: strawberry.ID | None = None
    provider_id: strawberry.ID | None = None
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text in the name or the project id."
    )

    def to_domain(self) -> persistence.ConnectionFilter:
        return persistence.ConnectionFilter(
            provider_category=self.provider_category,
            status=self.status,
            project_id=str(self.project_id) if self.project_id is not None else None,
            provider_id=str(self.provider_id) if self.provider_id is not None else None,
            search=self.search,
        )


@strawberry.input(description="Sort order; CREATED_AT DESC (newest first) by default.")
class IntegrationConnectionOrder:
    field: ConnectionSortField = persistence.ConnectionSortField.CREATED_AT  # type: ignore[valid-type]
    direction: SortDirection = SortDirection.DESC

    def to_domain(self) -> persistence.ConnectionSort:
        return persistence.ConnectionSort(
            field=persistence.ConnectionSortField(self.field),
            descending=self.direction is SortDirection.DESC,
        )


@strawberry.input
class EstablishConnectionInput:
    provider_id: strawberry.ID
    name: str
    project_id: strawberry.ID
    auth_mode: AuthMode
    credential_id: strawberry.ID = strawberry.field(
        description="A credential of the tenant with the same auth mode."
    )
    configuration: JSON | None = strawberry.field(
        default=None, description="Must satisfy the provider's configuration schema."
    )
    inbound_signing_secret_ref: str | None = strawberry.field(
        default=None,
        description="Vault reference of the secret the provider signs its webhooks to us with.",
    )
    run_test: bool = strawberry.field(
        default=True,
        description="Run the provider's verification request first; a failure establishes "
        "nothing ACTIVE.",
    )

    def to_domain(self) -> domain.ConnectionDefinition:
        return domain.ConnectionDefinition(
            provider_id=str(self.provider_id),
            name=self.name,
            project_id=str(self.project_id),
            auth_mode=self.auth_mode,
            credential_id=str(self.credential_id),
            configuration=self.configuration,
            inbound_signing_secret_ref=self.inbound_signing_secret_ref,
            run_test=self.run_test,
        )


@strawberry.input(description="Only the fields given change; null clears the signing secret.")
class UpdateConnectionInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    configuration: JSON | None = strawberry.UNSET
    inbound_signing_secret_ref: str | None = strawberry.UNSET
    version: int | None = strawberry.field(
        default=None, description="The version you read; a newer one refuses the update."
    )

    def to_domain(self) -> domain.ConnectionChanges:
        def keep(value: Any) -> Any:
            return domain.KEEP if value is strawberry.UNSET else value

        return domain.ConnectionChanges(
            id=str(self.id),
            name=keep(self.name) if self.name is not None else domain.KEEP,
            configuration=keep(self.configuration),
            inbound_signing_secret_ref=keep(self.inbound_signing_secret_ref),
            expected_version=self.version,
        )


@strawberry.input
class TestConnectionInput:
    id: strawberry.ID


@strawberry.input
class RetireConnectionInput:
    id: strawberry.ID
    confirm_name: str = strawberry.field(description="Must equal the connection's name.")
    version: int | None = None


@strawberry.type
class EstablishConnectionPayload:
    connection: IntegrationConnection | None = strawberry.field(
        description="The new connection; null when its live test failed (nothing is established)."
    )
    test_run: IntegrationRun | None = strawberry.field(
        description="The live test, also when it failed: then its `connectionId` is the failed "
        "attempt, kept (RETIRED, TEST_FAILED) for diagnosis and never listed."
    )
    user_errors: list[UserError]


@strawberry.type
class UpdateConnectionPayload:
    connection: IntegrationConnection | None
    user_errors: list[UserError]


@strawberry.type
class TestConnectionPayload:
    run: IntegrationRun | None
    connection: IntegrationConnection | None
    user_errors: list[UserError]


@strawberry.type
class RetireConnectionPayload:
    connection: IntegrationConnection | None
    user_errors: list[UserError]
