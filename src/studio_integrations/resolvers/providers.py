"""providers, apiClients, capabilityMatrix; registerProvider, registerApiClient."""

from __future__ import annotations

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.domain import providers as domain
from studio_integrations.persistence.models import Provider as ProviderRow
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers import loaders
from studio_integrations.resolvers.governed import run_governed
from studio_integrations.schema.context import Info
from studio_integrations.schema.providers import (
    ApiClientFilter,
    CapabilityMatrix,
    ExternalApiClient,
    ExternalApiClientConnection,
    Provider,
    ProviderConnection,
    ProviderFilter,
    RegisterApiClientInput,
    RegisterApiClientPayload,
    RegisterProviderInput,
    RegisterProviderPayload,
)


async def resolve_providers(
    info: Info,
    filter: ProviderFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> ProviderConnection:
    flt = filter or ProviderFilter()
    page_request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_providers(
            session,
            domain.ProviderFilter(
                category=flt.category,
                status=flt.status,
                capability=flt.capability,
                search=flt.search,
                include_global=flt.include_global,
            ),
            page_request,
        )
    return ProviderConnection.from_page(page, Provider.from_row)


async def resolve_api_clients(
    info: Info,
    filter: ApiClientFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> ExternalApiClientConnection:
    flt = filter or ApiClientFilter()
    page_request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_api_clients(
            session,
            domain.ApiClientFilter(
                provider_id=str(flt.provider_id) if flt.provider_id is not None else None,
                status=flt.status,
                assembly=flt.assembly,
            ),
            page_request,
        )
    return ExternalApiClientConnection.from_page(page, ExternalApiClient.from_row)


async def resolve_capability_matrix(
    info: Info, provider_ids: list[strawberry.ID] | None = None
) -> CapabilityMatrix:
    ids = [str(i) for i in provider_ids] if provider_ids is not None else None
    async with info.context.read() as session:
        matrix = await domain.capability_matrix(session, ids)
    # Nested fields (a row's provider.apiClients, a client's provider) reuse what was loaded.
    registry = info.context.loaders
    for provider in matrix.providers:
        registry.by_id(ProviderRow).prime(provider.id, provider)
        registry.get(loaders.api_clients_by_provider).prime(
            provider.id, matrix.clients_by_provider.get(provider.id, [])
        )
    return CapabilityMatrix.from_domain(matrix)


async def register_provider(info: Info, input: RegisterProviderInput) -> RegisterProviderPayload:
    definition = input.to_domain()
    allow_loopback = info.context.services.settings.allow_loopback_targets
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.register_provider(
            session, ctx, definition=definition, allow_loopback=allow_loopback
        ),
    )
    return RegisterProviderPayload(
        provider=outcome.map(Provider.from_row),
        user_errors=outcome.user_errors,
    )


async def register_api_client(
    info: Info, input: RegisterApiClientInput
) -> RegisterApiClientPayload:
    definition = input.to_domain()
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.register_api_client(session, ctx, definition=definition),
    )
    return RegisterApiClientPayload(
        api_client=outcome.map(ExternalApiClient.from_row),
        user_errors=outcome.user_errors,
    )


@strawberry.type
class ProvidersQuery:
    providers: ProviderConnection | None = strawberry.field(
        resolver=resolve_providers,
        extensions=requires(Scope.PROVIDERS_READ),
        description=(
            "The tenant's providers and the global catalogue (`global: true`), newest first. "
            "Requires `providers:read`."
        ),
    )

    api_clients: ExternalApiClientConnection | None = strawberry.field(
        resolver=resolve_api_clients,
        extensions=requires(Scope.PROVIDERS_READ),
        description=(
            "Visible API clients by assembly, newest SemVer first. Requires `providers:read`."
        ),
    )

    capability_matrix: CapabilityMatrix | None = strawberry.field(
        resolver=resolve_capability_matrix,
        extensions=requires(Scope.PROVIDERS_READ),
        description=(
            "Which operations each provider and API client supports: every visible provider, "
            "or the given ones. Requires `providers:read`."
        ),
    )


@strawberry.type
class ProvidersMutation:
    register_provider: RegisterProviderPayload | None = strawberry.mutation(
        resolver=register_provider,
        extensions=requires(ACTION_SCOPES["registerProvider"]),
        description="Register a tenant-owned provider. Requires `providers:write`.",
    )

    register_api_client: RegisterApiClientPayload | None = strawberry.mutation(
        resolver=register_api_client,
        extensions=requires(ACTION_SCOPES["registerApiClient"]),
        description=(
            "Register a version of an API client for one of the tenant's providers. "
            "Requires `providers:write`."
        ),
    )
