"""Execution of plain leaf fields without graphql-core's per-field machinery.

Most of a Studio page is leaves read straight off an object (``name``, ``status``,
``startedAt``: 2,000 of the Connections page's 2,255 fields). For those graphql-core builds a
resolve-info object, calls Strawberry's basic-field resolver, then walks ``complete_value``;
here a field whose Strawberry definition is *basic* (no resolver, no extension, so no guard)
and whose type is a scalar or enum is read and coerced directly: the same resolver function,
the same ``coerce_output_value``. Anything off the happy path — an exception, a null for a
non-null field, a value the scalar refuses, an awaitable, or field middleware (a schema
extension with a ``resolve`` hook) — is handed back to graphql-core's ``execute_field``,
which reads the attribute again and produces its exact error, path and null propagation.
Everything else (resolvers, loaders, guards, lists, objects) runs through graphql-core
unchanged.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLLeafType,
    GraphQLObjectType,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# (resolve function, non-null, leaf type)
LeafPlan = tuple[Any, bool, GraphQLLeafType]

# id(parent type), field name -> (parent type, plan or None). The type is kept so the id
# stays its own; schemas are built once per process.
_PLANS: dict[tuple[int, str], tuple[GraphQLObjectType, LeafPlan | None]] = {}


def _plan(parent_type: GraphQLObjectType, field_name: str) -> LeafPlan | None:
    key = (id(parent_type), field_name)
    found = _PLANS.get(key)
    if found is not None and found[0] is parent_type:
        return found[1]
    plan: LeafPlan | None = None
    field_def = parent_type.fields.get(field_name)
    if field_def is not None:
        resolve = field_def.resolve
        leaf = get_nullable_type(field_def.type)
        if getattr(resolve, "_is_default", False) and is_leaf_type(leaf):
            plan = (resolve, is_non_null_type(field_def.type), leaf)
    _PLANS[key] = (parent_type, plan)
    return plan


class StudioExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        plan = _plan(parent_type, field_details_list[0].node.name.value)
        middleware = self.middleware_manager
        if plan is None or (middleware is not None and middleware.middlewares):
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )
        resolve, non_null, leaf = plan
        try:
            result = resolve(source, None)
            if result is not None and result is not Undefined and not self.is_awaitable(result):
                coerced = leaf.coerce_output_value(result)
                if coerced is not None and coerced is not Undefined:
                    return coerced
            elif (result is None or result is Undefined) and not non_null:
                return None
        except Exception:  # noqa: S110 - graphql-core reports it, below
            pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
