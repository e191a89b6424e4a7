"""Assembles the Schema: root Query, Mutation and Subscription fields (DESIGN §5).

Root fields only bind names, guards and resolvers; the work is in ``resolvers/`` and
``subscriptions/``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from studio_integrations.auth.guards import requires
from studio_integrations.auth.scopes import Scope
from studio_integrations.resolvers.audit import resolve_audit_events
from studio_integrations.resolvers.node import resolve_node
from studio_integrations.schema.audit import AuditEvent, AuditEventConnection
from studio_integrations.schema.context import Info
from studio_integrations.schema.extensions import schema_extensions
from studio_integrations.schema.relay import Node
from studio_integrations.schema.viewer import Viewer
from studio_integrations.subscriptions.audit import subscribe_audit_events

log = logging.getLogger(__name__)


@strawberry.type
class Query:
    @strawberry.field(description="The authenticated caller and what they may do.")
    def viewer(self, info: Info) -> Viewer:
        return Viewer.for_principal(info.context.require_principal())

    node: Node | None = strawberry.field(
        resolver=resolve_node, description="Any object by its id; null when not visible."
    )

    audit_events: AuditEventConnection | None = strawberry.field(
        resolver=resolve_audit_events,
        extensions=requires(Scope.AUDIT_READ),
        description="The tenant's audit log, newest first. Requires `audit:read`.",
    )


@strawberry.type
class Subscription:
    audit_events: AsyncGenerator[AuditEvent, None] = strawberry.subscription(
        resolver=subscribe_audit_events,
        extensions=requires(Scope.AUDIT_READ),
        description=(
            "The tenant's events as they happen, optionally only some types. Requires `audit:read`."
        ),
    )


class StudioSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Client errors are the client's business: log them at DEBUG. Unexpected errors are
        logged once, with their traceback and trace id, by ``ShapeErrors``."""
        for error in errors:
            log.debug("graphql error: %s", error.message)


def build_schema() -> strawberry.Schema:
    return StudioSchema(
        query=Query,
        subscription=Subscription,
        types=[AuditEvent],
        extensions=schema_extensions(),
    )


schema = build_schema()
