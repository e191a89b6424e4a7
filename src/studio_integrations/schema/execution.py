"""Execution of plain leaf fields without graphql-core's per-field machinery.

Most of a Studio page is leaves read straight off an object (``name``, ``status``,
``startedAt``: 2,000 of the Connections page's 2,255 fields). For those graphql-core builds a
resolve-info object, calls Strawberry's basic-field resolver, then walks ``complete_value``;
here a field whose Strawberry definition is *basic* (no resolver, no extension, so no guard)
and whose type is a scalar or enum is read and coerced directly: the attribute Strawberry's
basic-field resolver reads (``getattr``), the same ``coerce_output_value``. Anything off the
happy path — an exception, a null for a non-null field, a value the scalar refuses, an
awaitable, or field middleware (a schema extension with a ``resolve`` hook) — is handed back
to graphql-core's ``execute_field``, which reads the attribute again and produces its exact
error, path and null propagation.
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
from strawberry.types.field import StrawberryField

# (attribute name, non-null, leaf type)
LeafPlan = tuple[str, bool, GraphQLLeafType]
DEFINITION = "strawberry-definition"  # where Strawberry keeps a field's definition

# id(parent type), field name -> (parent type, plan or None). The type is kept so the id
# stays its own; schemas are built once per process.
_PLANS: dict[tuple[int, str], tuple[GraphQLObjectType, LeafPlan | None]] = {}


def _plan(parent_type: GraphQLObjectType, field_name: str) -> LeafPlan | None:
    plan: LeafPlan | None = None
    field_def = parent_type.fields.get(field_name)
    if field_def is not None:
        definition = (field_def.extensions or {}).get(DEFINITION)
        leaf = get_nullable_type(field_def.type)
        if (
            getattr(field_def.resolve, "_is_default", False)
            and isinstance(definition, StrawberryField)
            and definition.is_basic_field
            and definition.default_resolver is getattr
            and is_leaf_type(leaf)
        ):
            plan = (definition.python_name, is_non_null_type(field_def.type), leaf)
    _PLANS[(id(parent_type), field_name)] = (parent_type, plan)
    return plan


class StudioExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        middleware = self.middleware_manager
        # A schema extension with a ``resolve`` hook wraps every field: no shortcut then.
        self._shortcuts = middleware is None or not middleware.middlewares

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        if self._shortcuts:
            name = field_details_list[0].node.name.value
            found = _PLANS.get((id(parent_type), name))
            plan = (
                found[1]
                if found is not None and found[0] is parent_type
                else _plan(parent_type, name)
            )
            if plan is not None:
                attribute, non_null, leaf = plan
                try:
                    result = getattr(source, attribute)
                    if result is None or result is Undefined:
                        if not non_null:
                            return None
                    elif not self.is_awaitable(result):
                        coerced = leaf.coerce_output_value(result)
                        if coerced is not None and coerced is not Undefined:
                            return coerced
                except Exception:  # noqa: S110 - graphql-core reports it, below
                    pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
