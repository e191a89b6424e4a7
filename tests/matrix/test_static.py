"""What the schema itself must say: every root field guarded (or allow-listed with a reason),
every mutation an action with one scope, every guarded object field reachable for the
live matrix, every mutation with a success case for the audit test."""

from __future__ import annotations

from graphql import GraphQLObjectType, get_named_type

from studio_integrations.auth.scopes import ACTION_SCOPES
from studio_integrations.resolvers.node import NODE_TYPES
from tests.matrix.cases import CASES
from tests.matrix.schema_walk import (
    GRAPHQL,
    UNGUARDED_ROOT_FIELDS,
    guard_of,
    guarded_object_fields,
    root_fields,
)


def test_every_root_field_is_guarded_or_reviewed() -> None:
    unguarded = [
        (ref.parent, ref.name)
        for kind in ("query", "mutation", "subscription")
        for ref in root_fields(kind)
        if ref.scope is None
    ]
    assert sorted(unguarded) == sorted(UNGUARDED_ROOT_FIELDS), (
        "a root field without requires(scope) must be added to UNGUARDED_ROOT_FIELDS with a "
        "reviewed reason (or, better, guarded)"
    )


def test_every_mutation_is_an_action_guarded_by_its_scope() -> None:
    mutations = {ref.name: ref.scope for ref in root_fields("mutation")}
    assert set(mutations) == set(ACTION_SCOPES), "viewer.can and the guards read ACTION_SCOPES"
    assert all(mutations[name] == scope for name, scope in ACTION_SCOPES.items()), mutations


def test_every_mutation_has_a_success_case() -> None:
    missing = {ref.name for ref in root_fields("mutation")} - set(CASES)
    assert not missing, f"add a success case to tests/matrix/cases.py for {sorted(missing)}"


def test_every_guarded_object_field_can_be_reached_through_node() -> None:
    """The live matrix reaches a guarded field through ``node(id:)`` of its parent type."""
    unreachable = [
        f"{ref.parent}.{ref.name}"
        for ref in guarded_object_fields()
        if ref.parent not in NODE_TYPES
    ]
    assert not unreachable, unreachable


def test_every_node_type_implements_node() -> None:
    for type_name in NODE_TYPES:
        graphql_type = GRAPHQL.type_map.get(type_name)
        assert isinstance(graphql_type, GraphQLObjectType), type_name
        assert "Node" in {i.name for i in graphql_type.interfaces}, type_name


# Fields that lead from one area's object into another area's object without the other
# area's scope, each with the reviewed reason.
CROSS_AREA_ALLOWED: dict[tuple[str, str], str] = {
    ("IntegrationConnection", "provider"): "which system a connection talks to is part of the "
    "connection itself (the Studio shows it in every row); the provider is public catalogue "
    "metadata",
}


def test_fields_crossing_into_another_area_need_that_areas_scope() -> None:
    """An object field returning another area's object (a Node type read with another scope)
    must be guarded by that scope, so reading a connection never leaks its credential to a
    caller without ``credentials:read``."""
    problems = []
    for parent_name, parent in NODE_TYPES.items():
        graphql_type = GRAPHQL.type_map[parent_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        for field_name, field in graphql_type.fields.items():
            target = get_named_type(field.type)
            target_type = NODE_TYPES.get(target.name)
            if target_type is None or target_type.scope == parent.scope:
                continue
            if (parent_name, field_name) in CROSS_AREA_ALLOWED:
                continue
            if guard_of(field) != target_type.scope:
                problems.append(
                    f"{parent_name}.{field_name} returns {target.name}: guard it with "
                    f"{target_type.scope.value} (or review it into CROSS_AREA_ALLOWED)"
                )
    assert not problems, problems
