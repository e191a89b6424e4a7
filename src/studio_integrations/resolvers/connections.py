"""integrationConnections query; establishConnection, updateConnection, testConnection,
retireConnection."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from studio_integrations.auth.scopes import Scope
from studio_integrations.core.context import ActionContext
from studio_integrations.core.errors import UserInputError, UserInputErrors
from studio_integrations.domain import connections as domain
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers.governed import run_governed
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
from studio_integrations.schema.errors import UserError


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


async def _run_with_calls(
    info: Info,
    action: Callable[[TenantSessions, ActionContext], Awaitable[domain.RunResult]],
) -> tuple[domain.RunResult | None, list[UserError]]:
    """Actions that call a provider manage their own sessions (no transaction is held over
    the call); validation failures come back as userErrors, like ``run_governed``'s."""
    sessions = TenantSessions(info.context.services.db, info.context.scope)
    try:
        result = await action(sessions, info.context.action_context())
    except UserInputErrors as exc:
        return None, [UserError.from_exception(e) for e in exc.errors]
    except UserInputError as exc:
        return None, [UserError.from_exception(exc)]
    errors = [UserError.from_exception(result.error)] if result.error is not None else []
    return result, errors


async def establish_connection(
    info: Info, input: EstablishConnectionInput
) -> EstablishConnectionPayload:
    definition = dataclasses.replace(
        input.to_domain(),
        may_widen_credential_audience=info.context.require_principal().has(Scope.CREDENTIALS_WRITE),
    )
    services = info.context.services
    result, errors = await _run_with_calls(
        info,
        lambda sessions, ctx: domain.establish_connection(
            sessions,
            ctx,
            vault=services.vault,
            caller=services.provider_caller,
            definition=definition,
        ),
    )
    return EstablishConnectionPayload(
        connection=IntegrationConnection.from_row(result.connection)
        if result and result.connection
        else None,
        test_run=IntegrationRun.from_row(result.run) if result and result.run else None,
        user_errors=errors,
    )


async def test_connection(info: Info, input: TestConnectionInput) -> TestConnectionPayload:
    services = info.context.services
    connection_id = str(input.id)
    result, errors = await _run_with_calls(
        info,
        lambda sessions, ctx: domain.run_connection_test(
            sessions,
            ctx,
            vault=services.vault,
            caller=services.provider_caller,
            connection_id=connection_id,
        ),
    )
    return TestConnectionPayload(
        run=IntegrationRun.from_row(result.run) if result and result.run else None,
        connection=IntegrationConnection.from_row(result.connection)
        if result and result.connection
        else None,
        user_errors=errors,
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
        connection=IntegrationConnection.from_row(outcome.value) if outcome.value else None,
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
        connection=IntegrationConnection.from_row(outcome.value) if outcome.value else None,
        user_errors=outcome.user_errors,
    )
