"""credentials query; registerCredential."""

from __future__ import annotations

import strawberry

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import ACTION_SCOPES, Scope
from studio_integrations.domain import credentials as domain
from studio_integrations.persistence.repository import DEFAULT_PAGE_SIZE, PageRequest
from studio_integrations.resolvers.governed import run_governed
from studio_integrations.schema.context import Info
from studio_integrations.schema.credentials import (
    Credential,
    CredentialConnection,
    CredentialFilter,
    RegisterCredentialInput,
    RegisterCredentialPayload,
)


async def resolve_credentials(
    info: Info,
    filter: CredentialFilter | None = None,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> CredentialConnection:
    flt = (filter or CredentialFilter()).to_domain()
    page_request = PageRequest(first=first, after=after)
    async with info.context.read() as session:
        page = await domain.list_credentials(session, flt, page_request)
    return CredentialConnection.from_page(page, Credential.from_row)


async def register_credential(
    info: Info, input: RegisterCredentialInput
) -> RegisterCredentialPayload:
    definition = input.to_domain()
    vault = info.context.services.vault
    outcome = await run_governed(
        info,
        lambda session, ctx: domain.register_credential(
            session, ctx, vault=vault, definition=definition
        ),
    )
    return RegisterCredentialPayload(
        credential=outcome.map(Credential.from_row),
        user_errors=outcome.user_errors,
    )


@strawberry.type
class CredentialsQuery:
    credentials: CredentialConnection | None = strawberry.field(
        resolver=resolve_credentials,
        extensions=requires(Scope.CREDENTIALS_READ),
        description=(
            "The tenant's credentials (references and metadata, never values), newest first. "
            "Requires `credentials:read`."
        ),
    )


@strawberry.type
class CredentialsMutation:
    register_credential: RegisterCredentialPayload | None = strawberry.mutation(
        resolver=register_credential,
        extensions=requires(ACTION_SCOPES["registerCredential"]),
        description=(
            "Bind a secret of the configured vault by reference and pin its version. "
            "Requires `credentials:write`."
        ),
    )
