"""Assembles the Schema (DESIGN §5): the root Query, Mutation and Subscription types are
merged from each area's (``resolvers/<area>.py``, ``subscriptions/<area>.py``), where every
root field sits beside its resolver and its guard."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from studio_integrations.resolvers.audit import AuditQuery
from studio_integrations.resolvers.connections import ConnectionsMutation, ConnectionsQuery
from studio_integrations.resolvers.credentials import CredentialsMutation, CredentialsQuery
from studio_integrations.resolvers.health import HealthQuery
from studio_integrations.resolvers.node import NodeQuery, ViewerQuery
from studio_integrations.resolvers.providers import ProvidersMutation, ProvidersQuery
from studio_integrations.resolvers.rotation import RotationMutation, RotationQuery
from studio_integrations.resolvers.webhooks import WebhooksMutation, WebhooksQuery
from studio_integrations.schema.audit import AuditEvent
from studio_integrations.schema.connections import IntegrationConnection, IntegrationRun
from studio_integrations.schema.credentials import Credential
from studio_integrations.schema.execution import StudioExecutionContext
from studio_integrations.schema.extensions import schema_extensions
from studio_integrations.schema.health import IntegrationFailure
from studio_integrations.schema.providers import ExternalApiClient, Provider
from studio_integrations.schema.rotation import CredentialRotation
from studio_integrations.schema.webhooks import WebhookDelivery, WebhookSubscription
from studio_integrations.subscriptions.audit import AuditSubscription
from studio_integrations.subscriptions.execution import EventScopedExecutor
from studio_integrations.subscriptions.health import HealthSubscription
from studio_integrations.subscriptions.webhooks import WebhooksSubscription

log = logging.getLogger(__name__)


def _merged(name: str, *areas: type) -> type:
    """One root type from the areas', whose fields the schema lists in the order given."""
    return merge_types(name, areas)


Query = _merged(
    "Query",
    NodeQuery,
    ConnectionsQuery,
    HealthQuery,
    AuditQuery,
    ProvidersQuery,
    CredentialsQuery,
    RotationQuery,
    WebhooksQuery,
    ViewerQuery,
)
Mutation = _merged(
    "Mutation",
    ConnectionsMutation,
    ProvidersMutation,
    CredentialsMutation,
    RotationMutation,
    WebhooksMutation,
)
Subscription = _merged("Subscription", WebhooksSubscription, HealthSubscription, AuditSubscription)


class StudioSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Client errors are the client's business: log them at DEBUG. Unexpected errors are
        logged once, with their traceback and trace id, by ``ShapeErrors``."""
        for error in errors:
            log.debug("graphql error: %s", error.message)

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        """As Strawberry's, except that a document that does not parse (syntax, token limit)
        is answered with its error: Strawberry lets the parser extension's error escape
        the stream, and the WebSocket handler then logged it and sent a bare ``complete``
        (a subscribe of ``"subscription {"`` or of a blank document got no error at all)."""
        return _parse_errors_answered(await super().stream(*args, **kwargs))


async def _parse_errors_answered(source: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    try:
        first = await anext(source)
    except StopAsyncIteration:
        return
    except GraphQLError as error:  # coded by ShapeErrors on its way out of the operation
        await source.aclose()
        yield PreExecutionError(data=None, errors=[error])
        return
    try:
        yield first
        async for result in source:
            yield result
    finally:
        await source.aclose()


class FastEventScopedExecutor(EventScopedExecutor, StudioExecutionContext):
    """Plain leaves read without graphql-core's completion walk (``schema.execution``), and
    each subscription event executed with its own memo and context
    (``subscriptions.execution``)."""


def build_schema(*, fast_leaves: bool = True) -> strawberry.Schema:
    """``fast_leaves=False``: graphql-core's own field execution throughout (the reference
    the differential tests compare ``schema.execution`` against)."""
    return StudioSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[
            CredentialRotation,
            AuditEvent,
            Provider,
            ExternalApiClient,
            Credential,
            IntegrationConnection,
            IntegrationRun,
            IntegrationFailure,
            WebhookSubscription,
            WebhookDelivery,
        ],
        extensions=schema_extensions(),
        execution_context_class=FastEventScopedExecutor if fast_leaves else EventScopedExecutor,
    )


schema = build_schema()
