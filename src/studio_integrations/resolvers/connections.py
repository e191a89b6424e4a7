"""integrationConnections query; establishConnection, updateConnection, testConnection,
retireConnection."""

from __future__ import annotations

import dataclasses

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.domain import connections as domain
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers.governed import run_governed, run_governed_calls
from studio_integrations.schema.connections import (
    EstablishConnectionInput,
    EstablishConnectionPayload,
    IntegrationConnection,
    IntegrationConnectionConnection,
    IntegrationConnectionFilter,
    IntegrationConnectionOrder,
    IntegrationRun,
    RetireConnectionInput,
    RetireConnectionPayload,
    TestConnectionInput,
    TestConnectionPayload,
    UpdateConnectionInput,
    UpdateConnectionPayload,
)
from studio_integrations.schema.context import Info


async def resolve_integration_connections(
    info: Info,
    filter: IntegrationConnectionFilter | None = None,
    order_by: IntegrationConnectionOrder | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> IntegrationConnectionConnection:
    flt = (filter or IntegrationConnectionFilter()).to_domain()
    sort = (order_by or IntegrationConnectionOrder()).to_domain()
    page_request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_connections(session, flt, sort, page_request)
    return IntegrationConnectionConnection.from_page(page, IntegrationConnection.from_row)


async def establish_connection(
    info: Info, input: EstablishConnectionInput
) -> EstablishConnectionPayload:
    definition = dataclasses.replace(
        input.to_domain(),
        may_widen_credential_audience=info.context.require_principal().has(Scope.CREDENTIALS_WRITE),
    )
    services = info.context.services
    outcome = await run_governed_calls(
        info,
        lambda sessions, ctx: domain.establish_connection(
            sessions,
            ctx,
            vault=services.vault,
            caller=services.provider_caller,
            policy=services.health_policy,
            definition=definition,
        ),
    )
    result = outcome.value
    return EstablishConnectionPayload(
        connection=IntegrationConnection.from_row(result.connection)
        if result and result.connection
        else None,
        test_run=IntegrationRun.from_row(result.run) if result and result.run else None,
        user_errors=outcome.also(result.error if result else None).user_errors,
    )


async def test_connection(info: Info, input: TestConnectionInput) -> TestConnectionPayload:
    services = info.context.services
    connection_id = str(input.id)
    outcome = await run_governed_calls(
        info,
        lambda sessions, ctx: domain.run_connection_test(
            sessions,
            ctx,
            vault=services.vault,
            caller=services.provider_caller,
            policy=services.health_policy,
            connection_id=connection_id,
        ),
    )
    result = outcome.value
    return TestConnectionPayload(
        run=IntegrationRun.from_row(result.run) if result and result.run else None,
        connection=IntegrationConnection.from_row(result.connection)
        if result and result.connection
        else None,
        user_errors=outcome.also(result.error if result else None).user_errors,
    )


async def update_connection(info: Info, input: UpdateConnectionInput) -> UpdateConnectionPayload:
    changes = input.to_domain()
    services = info.context.services
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.update_connection(
            session, ctx, vault=services.vault, caller=services.provider_caller, changes=changes
        ),
    )
    return UpdateConnectionPayload(
        connection=outcome.map(IntegrationConnection.from_row),
        user_errors=outcome.user_errors,
    )


async def retire_connection(info: Info, input: RetireConnectionInput) -> RetireConnectionPayload:
    connection_id, confirm_name, version = str(input.id), input.confirm_name, input.version
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.retire_connection(
            session,
            ctx,
            connection_id=connection_id,
            confirm_name=confirm_name,
            expected_version=version,
        ),
    )
    return RetireConnectionPayload(
        connection=outcome.map(IntegrationConnection.from_row),
        user_errors=outcome.user_errors,
    )


@strawberry.type
class ConnectionsQuery:
    integration_connections: IntegrationConnectionConnection | None = strawberry.field(
        resolver=resolve_integration_connections,
        extensions=requires(Scope.CONNECTIONS_READ),
        description=(
            "The tenant's connections, newest first unless `orderBy` says otherwise. "
            "Requires `connections:read`."
        ),
    )


@strawberry.type
class ConnectionsMutation:
    establish_connection: EstablishConnectionPayload | None = strawberry.mutation(
        resolver=establish_connection,
        extensions=requires(ACTION_SCOPES["establishConnection"]),
        description=(
            "Connect a provider with a credential and configuration, running its verification "
            "request live first (`runTest`). Requires `connections:write`."
        ),
    )

    update_connection: UpdateConnectionPayload | None = strawberry.mutation(
        resolver=update_connection,
        extensions=requires(ACTION_SCOPES["updateConnection"]),
        description=(
            "Rename a connection or change its configuration or inbound signing secret. "
            "Requires `connections:write`."
        ),
    )

    test_connection: TestConnectionPayload | None = strawberry.mutation(
        resolver=test_connection,
        extensions=requires(ACTION_SCOPES["testConnection"]),
        description=(
            "Run the provider's verification request now; the run is recorded with every "
            "attempt. Requires `connections:write`."
        ),
    )

    retire_connection: RetireConnectionPayload | None = strawberry.mutation(
        resolver=retire_connection,
        extensions=requires(ACTION_SCOPES["retireConnection"]),
        description=(
            "Retire a connection for good (`confirmName` must equal its name). "
            "Requires `connections:write`."
        ),
    )
