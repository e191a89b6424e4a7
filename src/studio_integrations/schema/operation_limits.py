"""Operation limits: query cost, rate limits, introspection, subscription caps.

``OperationLimits`` is a schema extension whose ``on_execute`` runs after the document has
parsed and validated and before anything executes, so a refused operation runs no resolver
and writes nothing. In order:

1. Subscriptions are served over WebSockets only; over HTTP one is refused
   (``SUBSCRIPTIONS_REQUIRE_WEBSOCKET``).
2. Introspection (``__schema``/``__type``) is refused (``INTROSPECTION_DISABLED``) unless
   ``settings.introspection_enabled`` (on in development, off in production by default).
   Every operation already needs a valid token, so it is never open to anonymous callers.
3. The query cost estimate (``estimate_cost``) above ``STUDIO_MAX_QUERY_COST`` is refused
   with ``QUERY_TOO_COSTLY`` and ``extensions.cost`` / ``extensions.maxCost``.
4. Rate limits (``auth.request_limits``): every root mutation field costs one unit of the tenant's
   and of the token's mutation budget; a query whose estimate reaches
   ``STUDIO_EXPENSIVE_QUERY_COST`` costs one unit of their expensive-query budgets. Cheap
   queries are never rate-limited. A refusal is ``RATE_LIMITED`` with
   ``extensions.retryAfter`` (seconds) and ``extensions.limit`` ("tenant" or "token"); over
   HTTP the whole request is refused with status 429 and a ``Retry-After`` header, since
   nothing of it ran.

Before all of these, text holding the NUL character (U+0000), in a variable (strings and
object keys, at any depth, JSON scalars included) or in a string literal of the document, is
refused with ``NUL_CHARACTER`` and ``extensions.path``: no text of this API can hold it, and
PostgreSQL can store it in neither ``text`` nor ``jsonb``; a variable holding a lone UTF-16
surrogate (``"\\ud800"``, which arrives over WebSockets; HTTP bodies are refused before) is
refused with ``INVALID_UNICODE``.

Subscription caps live in ``StudioTransportWSHandler``: a ``subscribe`` beyond
``STUDIO_MAX_SUBSCRIPTIONS_PER_CONNECTION`` live operations on its socket, or beyond
``STUDIO_MAX_SUBSCRIPTIONS_PER_TENANT`` for its tenant in this process, gets a
graphql-transport-ws ``error`` message with code ``TOO_MANY_SUBSCRIPTIONS``; the socket and
its other subscriptions carry on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    Visitor,
    get_named_type,
    is_composite_type,
    is_list_type,
    validate,
    visit,
)
from graphql.language.visitor import BREAK
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage
from strawberry.types.graphql import OperationType

from studio_integrations.auth.request_limits import Budget, RateDecision, token_fingerprint
from studio_integrations.auth.tokens import authorization_of, bearer_token
from studio_integrations.core.text import find_lone_surrogate, find_nul
from studio_integrations.telemetry import metrics

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# A list field without `first` (e.g. a run's attempts) is assumed to hold this many items.
UNBOUNDED_LIST_ESTIMATE = 20
PAGE_ARGUMENTS = ("first", "last")
_CAP = 10**15  # estimates stop growing here (they are compared with limits far below)


# --- the cost estimate ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """``objects``: how many objects the lists and connections can return, each page size
    (``first``, default 20) multiplied by the number of parents it is fetched for;
    ``depth``: the deepest field nesting. ``total`` = objects + depth."""

    objects: int
    depth: int

    @property
    def total(self) -> int:
        return min(self.objects + self.depth, _CAP)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


class _CostWalk:
    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.variable_defaults: dict[str, Any] = {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._fragment_costs: dict[str, tuple[int, int]] = {}
        self._visiting: set[str] = set()

    def selection_set(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType
    ) -> tuple[int, int]:
        """(objects per parent object, relative depth) of a selection set."""
        objects = depth = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                sub_objects, sub_depth = self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                sub_objects, sub_depth = self.selection_set(
                    selection.selection_set, target or parent
                )
            elif isinstance(selection, FragmentSpreadNode):
                sub_objects, sub_depth = self.fragment(selection.name.value)
            else:  # pragma: no cover - no other selection kinds exist
                continue
            objects = min(objects + sub_objects, _CAP)
            depth = max(depth, sub_depth)
        return objects, depth

    def fragment(self, name: str) -> tuple[int, int]:
        # Memoised per fragment: a fragment spread many times is walked once, so the walk
        # stays linear in the document's size whatever the spreads multiply to.
        if name in self._fragment_costs:
            return self._fragment_costs[name]
        definition = self.fragments.get(name)
        if definition is None or name in self._visiting:
            return 0, 0
        self._visiting.add(name)
        target = self.schema.get_type(definition.type_condition.name.value)
        cost = self.selection_set(definition.selection_set, target) if target else (0, 0)
        self._visiting.discard(name)
        self._fragment_costs[name] = cost
        return cost

    def field(self, node: FieldNode, parent: GraphQLNamedType) -> tuple[int, int]:
        name = node.name.value
        if name.startswith("__"):
            return 0, 0  # introspection and __typename: governed separately
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0, 1
        definition = parent.fields.get(name)
        if definition is None:
            return 0, 1
        named = get_named_type(definition.type)
        if not is_composite_type(named) or node.selection_set is None:
            return 0, 1
        items, counted = self._multiplier(node, definition, parent)
        child_objects, child_depth = self.selection_set(node.selection_set, named)
        objects = (items if counted else 0) + items * child_objects
        return min(objects, _CAP), child_depth + 1

    def _multiplier(
        self, node: FieldNode, definition: GraphQLField, parent: GraphQLNamedType
    ) -> tuple[int, bool]:
        """How many objects the field returns per parent, and whether they count (the
        edges/nodes of a connection are the page its field already counted)."""
        for argument_name in PAGE_ARGUMENTS:
            argument = definition.args.get(argument_name)
            if argument is not None:
                return self._page_size(node, argument_name, argument.default_value), True
        field_type = definition.type
        if isinstance(field_type, GraphQLNonNull):
            field_type = field_type.of_type
        if not is_list_type(field_type):
            return 1, False
        if node.name.value in ("edges", "nodes") and parent.name.endswith("Connection"):
            return 1, False
        return UNBOUNDED_LIST_ESTIMATE, True

    def _page_size(self, node: FieldNode, argument_name: str, default: Any) -> int:
        value: Any = default if isinstance(default, int) else DEFAULT_PAGE_SIZE
        for argument in node.arguments or ():
            if argument.name.value != argument_name:
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                name = argument.value.name.value
                value = self.variables.get(name, self.variable_defaults.get(name, value))
        if isinstance(value, bool) or not isinstance(value, int):
            return DEFAULT_PAGE_SIZE
        return max(0, min(value, MAX_PAGE_SIZE))


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: dict[str, Any] | None = None,
) -> CostEstimate:
    operation = _operation(document, operation_name)
    if operation is None:
        return CostEstimate(0, 0)
    root = schema.get_root_type(operation.operation)
    if root is None:
        return CostEstimate(0, 0)
    walk = _CostWalk(schema, document, variables or {})
    for definition in operation.variable_definitions or ():
        if isinstance(definition.default_value, IntValueNode):
            walk.variable_defaults[definition.variable.name.value] = int(
                definition.default_value.value
            )
    objects, depth = walk.selection_set(operation.selection_set, root)
    return CostEstimate(objects, depth)


def root_field_count(document: DocumentNode, operation_name: str | None) -> int:
    """Root fields of the operation (fragments included): the units a mutation charges."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }

    def count(selection_set: SelectionSetNode, seen: frozenset[str]) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 0 if selection.name.value.startswith("__") else 1
            elif isinstance(selection, InlineFragmentNode):
                total += count(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None and fragment.name.value not in seen:
                    total += count(fragment.selection_set, seen | {fragment.name.value})
        return total

    return count(operation.selection_set, frozenset())


# --- the extension ----------------------------------------------------------------------


class _NulLiteralFinder(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if "\x00" in node.value:
            self.found = True
            return BREAK
        return None


def find_nul_literal(document: DocumentNode) -> str | None:
    """``"a string literal of the document"`` when one holds U+0000 (block strings too).

    Remembered per document object: Strawberry's parser cache hands the same object back for
    the same text, so a cached document is walked once, not on every request."""
    hit = _NUL_SCANS.get(id(document))
    if hit is not None and hit[0] is document:
        return hit[1]
    finder = _NulLiteralFinder()
    visit(document, finder)
    found = "a string literal of the document" if finder.found else None
    _NUL_SCANS[id(document)] = (document, found)
    if len(_NUL_SCANS) > _NUL_SCAN_CACHE_SIZE:
        _NUL_SCANS.pop(next(iter(_NUL_SCANS)))
    return found


_NUL_SCAN_CACHE_SIZE = 512
# id(document) -> (the document, kept so the id stays its own; the scan's result)
_NUL_SCANS: dict[int, tuple[DocumentNode, str | None]] = {}


def limit_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def _token_of(context: Any) -> str:
    """The caller's bearer token (verified before any operation runs)."""
    params = getattr(context, "connection_params", None)
    return bearer_token(authorization_of(params, context.request.headers))


class OperationLimits(SchemaExtension):
    """See the module docstring. Contexts without ``services`` (unit-test schemas) skip it."""

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        services = getattr(context, "services", None)
        document = execution.graphql_document
        if services is None or document is None:
            yield
            return
        settings = services.settings
        schema: GraphQLSchema = execution.schema._schema
        over_socket = isinstance(context.request, WebSocket)
        operation_type = execution.operation_type

        if operation_type is OperationType.SUBSCRIPTION and not over_socket:
            raise limit_error(
                "subscriptions are served over WebSockets (graphql-transport-ws) at /graphql",
                "SUBSCRIPTIONS_REQUIRE_WEBSOCKET",
            )
        if not settings.introspection_enabled:
            errors = validate(schema, document, [NoSchemaIntrospectionCustomRule])
            if errors:
                raise limit_error(
                    "introspection is disabled on this server (STUDIO_INTROSPECTION)",
                    "INTROSPECTION_DISABLED",
                )
        nul_path = find_nul(execution.variables, "variables") or find_nul_literal(document)
        if nul_path is not None:
            raise limit_error(
                f"{nul_path} contains the NUL character (U+0000), which no text here may hold",
                "NUL_CHARACTER",
                path=nul_path,
            )
        # (the parser itself refuses lone surrogates in the document's own literals)
        surrogate_path = find_lone_surrogate(execution.variables, "variables")
        if surrogate_path is not None:
            raise limit_error(
                f"{surrogate_path} holds a lone UTF-16 surrogate (U+D800-U+DFFF), which is "
                "not text",
                "INVALID_UNICODE",
                path=surrogate_path,
            )
        cost = estimate_cost(schema, document, execution.operation_name, execution.variables)
        if cost.total > settings.max_query_cost:
            raise limit_error(
                f"the query's estimated cost {cost.total} is over the limit of "
                f"{settings.max_query_cost}: ask for smaller pages (`first`) or fewer nested "
                "lists",
                "QUERY_TOO_COSTLY",
                cost=cost.total,
                maxCost=settings.max_query_cost,
            )
        if operation_type is OperationType.MUTATION:
            await self._charge(
                context, "mutations", root_field_count(document, execution.operation_name)
            )
        elif operation_type is OperationType.QUERY and cost.total >= settings.expensive_query_cost:
            await self._charge(context, "expensive queries", 1)
        yield

    async def _charge(self, context: Any, what: str, units: int) -> None:
        settings = context.services.settings
        principal = context.require_principal()
        mutations = what == "mutations"
        tenant_limit = (
            settings.tenant_mutations_per_minute
            if mutations
            else settings.tenant_expensive_queries_per_minute
        )
        token_limit = (
            settings.token_mutations_per_minute
            if mutations
            else settings.token_expensive_queries_per_minute
        )
        kind = "m" if mutations else "q"
        budgets = [
            Budget("tenant", f"{kind}.tenant.{principal.tenant_id}", tenant_limit),
            Budget("token", f"{kind}.token.{token_fingerprint(_token_of(context))}", token_limit),
        ]
        decision: RateDecision = await context.services.rate_limiter.take(budgets, units)
        if decision.allowed:
            return
        metrics.RATE_LIMIT_REFUSALS.labels(f"{what.replace(' ', '_')}.{decision.refused_by}").inc()
        retry_after = decision.retry_after_seconds
        response = context.response
        if isinstance(response, Response) and not isinstance(context.request, WebSocket):
            response.status_code = 429
            response.headers["Retry-After"] = str(retry_after)
        whose = "this tenant" if decision.refused_by == "tenant" else "this token"
        raise limit_error(
            f"too many {what} for {whose}: retry in {retry_after} s",
            "RATE_LIMITED",
            retryAfter=retry_after,
            limit=decision.refused_by,
        )


# --- subscription caps ------------------------------------------------------------------


class StudioTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """graphql-transport-ws with per-socket and per-tenant caps on live operations."""

    async def handle_message(self, message: Any) -> None:
        """A frame that is JSON but not an object (``NaN``, ``1e999``, ``[]``) is the
        protocol's invalid message (close 4400); Strawberry indexes it and drops the socket."""
        if not isinstance(message, dict):
            await self.handle_invalid_message("WebSocket message must be a JSON object")
            return
        await super().handle_message(cast("Message", message))

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        principal = getattr(self.context, "principal", None)
        services = getattr(self.context, "services", None)
        if (
            not self.connection_acknowledged
            or principal is None
            or services is None
            or message["id"] in self.operations
        ):
            await super().handle_subscribe(message)  # the protocol's own refusals
            return
        settings = services.settings
        slots = services.subscription_slots
        tenant = principal.tenant_id
        if len(self.operations) >= settings.max_subscriptions_per_connection:
            await self._refuse(
                message["id"],
                f"this connection already has {len(self.operations)} live operations "
                f"(limit {settings.max_subscriptions_per_connection})",
                settings.max_subscriptions_per_connection,
                "connection",
            )
            return
        if not slots.acquire(tenant, settings.max_subscriptions_per_tenant):
            await self._refuse(
                message["id"],
                f"this tenant already has {slots.live(tenant)} live subscriptions "
                f"(limit {settings.max_subscriptions_per_tenant})",
                settings.max_subscriptions_per_tenant,
                "tenant",
            )
            return
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release(tenant)

        try:
            await self.start_operation(message, release)
        except BaseException:
            release()  # e.g. a subscribe without a query (the protocol closes the socket)
            raise

    async def start_operation(self, message: SubscribeMessage, release: Callable[[], None]) -> None:
        """Run a subscribe that passed the caps (Strawberry's way: a task per operation);
        ``release`` gives its tenant slot back, once, when the operation ends."""
        await super().handle_subscribe(message)
        operation = self.operations.get(message["id"])
        if operation is None or operation.task is None:
            release()
        else:
            operation.task.add_done_callback(lambda _task: release())

    async def _refuse(self, operation_id: str, message: str, limit: int, scope: str) -> None:
        error = limit_error(message, "TOO_MANY_SUBSCRIPTIONS", limit=limit, scope=scope)
        await self.send_message({"id": operation_id, "type": "error", "payload": [error.formatted]})


__all__ = [
    "CostEstimate",
    "OperationLimits",
    "StudioTransportWSHandler",
    "estimate_cost",
    "root_field_count",
]
