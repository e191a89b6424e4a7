"""Provider and API client types, the capability matrix, and their inputs and payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

import studio_integrations.schema.enums  # noqa: F401  (registers the shared enums)
from studio_integrations.auth.scopes import ACTION_SCOPES
from studio_integrations.core.enums import (
    ApiClientStatus,
    AuthMode,
    ProviderCategory,
    ProviderStatus,
)
from studio_integrations.core.errors import NotFound
from studio_integrations.domain import providers as domain
from studio_integrations.persistence.models import ExternalApiClient as ExternalApiClientRow
from studio_integrations.persistence.models import Provider as ProviderRow
from studio_integrations.resolvers import loaders
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError
from studio_integrations.schema.relay import Connection, Node

AUTH_SCHEME_DESCRIPTION = (
    "How each auth mode is applied: "
    '`{"apiKey": {"in": "header"|"query", "names": [...], "prefix": "AccessKey"}, '
    '"bearer": {"header", "prefix"}, "oauth2": {"tokenUrl", "scope", "clientAuth": '
    '"basic"|"body", "params"}}`, every part optional. Several `apiKey.names` take a JSON '
    "object secret with those keys."
)


@strawberry.type(description="The cheap authenticated call used by connection tests and probes.")
class VerificationRequest:
    method: str
    path: str = strawberry.field(
        description="Relative to the base URL; `{name}` placeholders come from the configuration."
    )
    expect_status: int

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> VerificationRequest:
        request = domain.VerificationRequest.from_document(doc)
        return cls(method=request.method, path=request.path, expect_status=request.expect_status)


@strawberry.type(description="Which of its own actions the viewer may perform on a provider.")
class ProviderViewerCan:
    register_api_client: bool = strawberry.field(
        description="False for global providers: the catalogue is read-only for tenants."
    )


@strawberry.type(description="An external system the factory integrates with.")
class Provider(Node):
    key: str
    name: str
    category: ProviderCategory
    description: str | None
    capabilities: list[str] = strawberry.field(
        description="Operations the provider supports, as `resource.action` tokens."
    )
    auth_modes: list[AuthMode]
    status: ProviderStatus
    is_global: bool = strawberry.field(
        name="global", description="Part of the shipped catalogue, visible to every tenant."
    )
    base_url: str = strawberry.field(
        description="May hold `{name}` placeholders filled from a connection's configuration."
    )
    verification: VerificationRequest
    configuration_schema: JSON = strawberry.field(
        description="JSON Schema that a connection's configuration must satisfy."
    )
    auth_scheme: JSON | None = strawberry.field(
        description=AUTH_SCHEME_DESCRIPTION
        + " Null: the defaults (`X-API-Key: <key>`, `Authorization: Bearer <token>`, "
        "RFC 7617 Basic, OAuth2 tokens from the configuration's `tokenUrl`)."
    )
    latency_threshold_ms: int = strawberry.field(
        description="p95 latency above which a connection's health is DEGRADED."
    )
    documentation_url: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The provider's API clients, newest SemVer first per assembly.")
    async def api_clients(self, info: Info) -> list[ExternalApiClient]:
        rows = await info.context.loaders.load(loaders.api_clients_by_provider, str(self.id))
        return [ExternalApiClient.from_row(r) for r in rows]

    @strawberry.field(description="Active, with at least one IMPLEMENTED API client.")
    async def ready_to_use(self, info: Info) -> bool:
        rows = await info.context.loaders.load(loaders.api_clients_by_provider, str(self.id))
        return self.status == ProviderStatus.ACTIVE and any(
            r.status == ApiClientStatus.IMPLEMENTED for r in rows
        )

    @strawberry.field
    def viewer_can(self, info: Info) -> ProviderViewerCan:
        principal = info.context.require_principal()
        return ProviderViewerCan(
            register_api_client=(
                not self.is_global
                and self.status == ProviderStatus.ACTIVE
                and principal.has(ACTION_SCOPES["registerApiClient"])
            )
        )

    @classmethod
    def from_row(cls, row: ProviderRow) -> Provider:
        return cls(
            id=strawberry.ID(row.id),
            key=row.key,
            name=row.name,
            category=ProviderCategory(row.category),
            description=row.description,
            capabilities=list(row.capabilities),
            auth_modes=[AuthMode(m) for m in row.auth_modes],
            status=row.status,
            is_global=row.tenant_id is None,
            base_url=row.base_url,
            verification=VerificationRequest.from_document(row.verification),
            configuration_schema=cast(JSON, row.configuration_schema),
            auth_scheme=cast(JSON, row.auth_scheme),
            latency_threshold_ms=row.latency_threshold_ms,
            documentation_url=row.documentation_url,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.type(description="A versioned client library for one provider's API.")
class ExternalApiClient(Node):
    provider_id: strawberry.ID
    assembly: str = strawberry.field(description="e.g. `ConnectSoft.Deputy.ApiClient`.")
    version: str = strawberry.field(description="SemVer 2.0.0.")
    capabilities: list[str]
    status: ApiClientStatus
    is_global: bool = strawberry.field(name="global")
    created_at: datetime

    @strawberry.field(description="IMPLEMENTED: the client is ready to use.")
    def ready_to_use(self) -> bool:
        return self.status == ApiClientStatus.IMPLEMENTED

    @strawberry.field
    async def provider(self, info: Info) -> Provider:
        row = await info.context.loaders.by_id(ProviderRow).load(str(self.provider_id))
        if row is None:  # a client is only visible with its provider; never expected
            raise NotFound("the client's provider is not visible")
        return Provider.from_row(row)

    @classmethod
    def from_row(cls, row: ExternalApiClientRow) -> ExternalApiClient:
        return cls(
            id=strawberry.ID(row.id),
            provider_id=strawberry.ID(row.provider_id),
            assembly=row.assembly,
            version=row.version,
            capabilities=list(row.capabilities),
            status=row.status,
            is_global=row.tenant_id is None,
            created_at=row.created_at,
        )


ProviderConnection = Connection[Provider]
ExternalApiClientConnection = Connection[ExternalApiClient]


@strawberry.type(description="Whether one row (provider or client) supports one capability.")
class CapabilityCell:
    capability: str
    supported: bool


@strawberry.type(description="A provider (`apiClient` null) or one of its API clients.")
class CapabilityMatrixRow:
    provider: Provider
    api_client: ExternalApiClient | None
    label: str
    cells: list[CapabilityCell] = strawberry.field(
        description="One per column of the matrix, in the same order."
    )


@strawberry.type(description="Rows per provider and API client, columns per capability.")
class CapabilityMatrix:
    capabilities: list[str] = strawberry.field(description="The columns, sorted.")
    rows: list[CapabilityMatrixRow]

    @classmethod
    def from_domain(cls, matrix: domain.CapabilityMatrix) -> CapabilityMatrix:
        providers: dict[str, Provider] = {}
        rows = []
        for row in matrix.rows:
            provider = providers.get(row.provider.id)
            if provider is None:
                provider = providers[row.provider.id] = Provider.from_row(row.provider)
            client = ExternalApiClient.from_row(row.api_client) if row.api_client else None
            rows.append(
                CapabilityMatrixRow(
                    provider=provider,
                    api_client=client,
                    label=f"{client.assembly} {client.version}" if client else provider.name,
                    cells=[
                        CapabilityCell(capability=c, supported=c in row.supported)
                        for c in matrix.capabilities
                    ],
                )
            )
        return cls(capabilities=matrix.capabilities, rows=rows)


# --- Inputs ------------------------------------------------------------------------------


@strawberry.input(description="Narrow the provider list. All given conditions must hold.")
class ProviderFilter:
    category: ProviderCategory | None = None
    status: ProviderStatus | None = None
    capability: str | None = strawberry.field(
        default=None, description="Only providers that declare this capability."
    )
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text in key, name or description."
    )
    include_global: bool = strawberry.field(
        default=True, description="False: only the tenant's own providers."
    )


@strawberry.input(description="Narrow the API client list. All given conditions must hold.")
class ApiClientFilter:
    provider_id: strawberry.ID | None = None
    status: ApiClientStatus | None = None
    assembly: str | None = None


@strawberry.input
class VerificationRequestInput:
    method: str = "GET"
    path: str
    expect_status: int = 200


@strawberry.input
class RegisterProviderInput:
    key: str = strawberry.field(description="Unique in the tenant; may not reuse a global key.")
    name: str
    category: ProviderCategory
    capabilities: list[str]
    auth_modes: list[AuthMode]
    base_url: str
    verification: VerificationRequestInput
    configuration_schema: JSON | None = strawberry.field(
        default=None,
        description="A JSON Schema (Draft 2020-12 unless `$schema` says) for an object; "
        "by default no configuration is accepted.",
    )
    auth_scheme: JSON | None = strawberry.field(
        default=None,
        description=AUTH_SCHEME_DESCRIPTION
        + " A section must apply to one of `authModes`; omitted or null: the defaults.",
    )
    description: str | None = None
    latency_threshold_ms: int | None = None
    documentation_url: str | None = None

    def to_domain(self) -> domain.ProviderDefinition:
        return domain.ProviderDefinition(
            key=self.key,
            name=self.name,
            category=self.category,
            capabilities=self.capabilities,
            auth_modes=self.auth_modes,
            base_url=self.base_url,
            verification=domain.VerificationRequest(
                method=self.verification.method,
                path=self.verification.path,
                expect_status=self.verification.expect_status,
            ),
            configuration_schema=self.configuration_schema,
            description=self.description,
            latency_threshold_ms=self.latency_threshold_ms,
            documentation_url=self.documentation_url,
            auth_scheme=cast("dict[str, Any] | None", self.auth_scheme),
        )


@strawberry.input
class RegisterApiClientInput:
    provider_id: strawberry.ID = strawberry.field(description="One of the tenant's providers.")
    assembly: str
    version: str = strawberry.field(description="SemVer 2.0.0, unique per assembly.")
    capabilities: list[str] = strawberry.field(
        description="A subset of the provider's capabilities."
    )
    status: ApiClientStatus = ApiClientStatus.PREVIEW

    def to_domain(self) -> domain.ApiClientDefinition:
        return domain.ApiClientDefinition(
            provider_id=str(self.provider_id),
            assembly=self.assembly,
            version=self.version,
            capabilities=self.capabilities,
            status=self.status,
        )


@strawberry.type
class RegisterProviderPayload:
    provider: Provider | None
    user_errors: list[UserError]


@strawberry.type
class RegisterApiClientPayload:
    api_client: ExternalApiClient | None
    user_errors: list[UserError]
