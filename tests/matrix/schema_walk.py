"""Walks the real schema: root fields, their guards, guarded object fields, and minimal
operations for any field (required arguments filled with placeholder values of their types).

Guards are read from the fields themselves (the ``requires(scope)`` permission extension on
each Strawberry field), so a field added later is enumerated here without anyone listing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)
from strawberry.permission import PermissionExtension

from studio_integrations.auth.guards import HasScope
from studio_integrations.auth.scopes import Scope
from studio_integrations.schema.schema import schema

GRAPHQL = schema._schema
ROOTS = {
    "query": GRAPHQL.query_type,
    "mutation": GRAPHQL.mutation_type,
    "subscription": GRAPHQL.subscription_type,
}

# Root fields that carry no scope guard, each with the reviewed reason. Anything else without
# a guard fails ``test_every_root_field_is_guarded``.
UNGUARDED_ROOT_FIELDS: dict[tuple[str, str], str] = {
    ("query", "viewer"): "who the caller is and what they may do: needed before anything else",
    ("query", "node"): "guarded per type: NODE_TYPES names the scope each id type needs",
}


@dataclass(frozen=True)
class FieldRef:
    parent: str  # "query" | "mutation" | "subscription" | an object type name
    name: str
    field: GraphQLField

    @property
    def scope(self) -> Scope | None:
        return guard_of(self.field)


def guard_of(field: GraphQLField) -> Scope | None:
    definition = field.extensions.get("strawberry-definition")
    for extension in getattr(definition, "extensions", None) or []:
        if isinstance(extension, PermissionExtension):
            for permission in extension.permissions:
                if isinstance(permission, HasScope):
                    return permission.scope
    return None


def root_fields(kind: str) -> list[FieldRef]:
    root = ROOTS[kind]
    assert root is not None
    return [FieldRef(kind, name, field) for name, field in sorted(root.fields.items())]


def object_types() -> list[GraphQLObjectType]:
    roots = {t.name for t in ROOTS.values() if t is not None}
    return [
        t
        for name, t in sorted(GRAPHQL.type_map.items())
        if isinstance(t, GraphQLObjectType) and not name.startswith("__") and name not in roots
    ]


# Guarded fields of views that are not Node types (so ``node(id:)`` cannot reach them):
# the cross-area rule applied to health views and live events, proved by
# tests/governance/test_cross_area.py instead of the live matrix.
GUARDED_VIEW_FIELDS: dict[tuple[str, str], str] = {
    ("ConnectionHealthEntry", "connection"): "externalHealth: a connection needs connections:read",
    ("ProviderHealth", "provider"): "externalHealth: a provider definition needs providers:read",
    ("HealthChange", "connection"): "healthChanged: a connection needs connections:read",
}


def guarded_object_fields() -> list[FieldRef]:
    return [
        FieldRef(t.name, name, field)
        for t in object_types()
        for name, field in sorted(t.fields.items())
        if guard_of(field) is not None and (t.name, name) not in GUARDED_VIEW_FIELDS
    ]


# --- Placeholder values ------------------------------------------------------------------


def placeholder(type_: GraphQLInputType, *, id_value: str = "x_00000000000000000000000000") -> Any:
    """A minimal value of an input type: required input fields filled, optional ones left out."""
    if isinstance(type_, GraphQLNonNull):
        return placeholder(type_.of_type, id_value=id_value)
    if isinstance(type_, GraphQLList):
        return []
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: placeholder(field.type, id_value=id_value)
            for name, field in type_.fields.items()
            if isinstance(field.type, GraphQLNonNull) and field.default_value is None
        }
    assert isinstance(type_, GraphQLScalarType), type_
    return {
        "ID": id_value,
        "String": "x",
        "Int": 1,
        "Float": 1.0,
        "Boolean": True,
        "DateTime": datetime.now(UTC).isoformat(),
        "JSON": {},
    }.get(type_.name, "x")


def selection(field: GraphQLField) -> str:
    return "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"


def operation(
    ref: FieldRef, *, args: dict[str, Any] | None = None, select: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A document calling one root field with its required arguments as variables."""
    kind = ref.parent
    values = dict(args or {})
    for name, arg in ref.field.args.items():
        if name not in values and isinstance(arg.type, GraphQLNonNull):
            values[name] = placeholder(arg.type)
    definitions = ", ".join(f"${n}: {ref.field.args[n].type}" for n in values)
    call = ", ".join(f"{n}: ${n}" for n in values)
    head = f"{kind} ({definitions})" if definitions else kind
    body = f"{ref.name}({call})" if call else ref.name
    return f"{head} {{ {body}{select if select is not None else selection(ref.field)} }}", values
