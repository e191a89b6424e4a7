"""The tenant matrix: with tenant A's token, every id of tenant B behaves exactly like an id
that does not exist — in ``node(id:)``, in every mutation's inputs, in list filters — and
lists never include B's rows."""

from __future__ import annotations

import json
import re
from typing import Any

from graphql import GraphQLInputObjectType, get_named_type

from studio_integrations.core.ids import PREFIXES, new_id, type_of
from tests.matrix.cases import CASES
from tests.matrix.conftest import MATRIX, World, trail
from tests.matrix.schema_walk import operation, root_fields
from tests.support.graphql import gql

ID_PATTERN = re.compile(
    r"\b(?:" + "|".join(sorted(PREFIXES.values(), key=len, reverse=True)) + r")_[0-9A-Z]{26}\b"
)

# Filter fields holding ids, and the type of object they name.
FILTER_ID_TYPES = {
    "providerId": "Provider",
    "connectionId": "IntegrationConnection",
    "credentialId": "Credential",
    "subscriptionId": "WebhookSubscription",
    "deliveryId": "WebhookDelivery",
    "subjectId": "IntegrationConnection",
    "projectId": None,  # not an object id: free text chosen by the tenant
}

pytestmark = MATRIX


def _mask(body: dict[str, Any]) -> str:
    """The response with every object id replaced, for comparing two responses."""
    return ID_PATTERN.sub("<id>", json.dumps(body, sort_keys=True))


def _id_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every object id in an input value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _id_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _id_paths(v, (*path, i))]
    if isinstance(value, str) and type_of(value) and ID_PATTERN.fullmatch(value):
        return [path]
    return []


def _replace(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


async def test_node_answers_foreign_ids_like_missing_ones(world: World) -> None:
    for type_name, foreign in world.b.ids.items():
        foreign_body = await gql(
            world.http,
            "query ($id: ID!) { node(id: $id) { id } }",
            {"id": foreign},
            token=world.a.token,
        )
        missing_body = await gql(
            world.http,
            "query ($id: ID!) { node(id: $id) { id } }",
            {"id": new_id(type_name)},
            token=world.a.token,
        )
        assert foreign_body == missing_body == {"data": {"node": None}}, type_name


async def test_mutations_answer_foreign_ids_like_missing_ones(world: World) -> None:
    problems: list[str] = []
    db = world.server.services.db
    for ref in root_fields("mutation"):
        valid = await CASES[ref.name].build(world, world.a)
        for path in _id_paths(valid):
            own = _get(valid, path)
            type_name = type_of(own)
            assert type_name is not None
            foreign = world.b.ids.get(type_name)
            if foreign is None:
                problems.append(f"{ref.name}: the world has no {type_name} of tenant B")
                continue
            bodies = []
            for other in (foreign, new_id(type_name)):
                document, variables = operation(
                    ref,
                    args={"input": _replace(valid, path, other)},
                    select=" { userErrors { field code message } }",
                )
                before = await trail(db)
                bodies.append(await gql(world.http, document, variables, token=world.a.token))
                if await trail(db) != before:
                    problems.append(f"{ref.name} {'.'.join(map(str, path))}: wrote an event")
            foreign_body, missing_body = bodies
            errors = (foreign_body.get("data") or {}).get(ref.name, {}) or {}
            if not errors.get("userErrors"):
                problems.append(f"{ref.name} accepted B's {type_name}: {foreign_body}")
            if _mask(foreign_body) != _mask(missing_body):
                problems.append(
                    f"{ref.name} {'.'.join(map(str, path))}: B's id {foreign_body} "
                    f"!= missing id {missing_body}"
                )
    assert not problems, "\n".join(problems)


async def test_lists_and_filters_never_show_foreign_rows(world: World) -> None:
    foreign_ids = set(world.b.ids.values())
    problems: list[str] = []
    for ref in root_fields("query"):
        if ref.scope is None:
            continue
        returned = get_named_type(ref.field.type)
        fields = getattr(returned, "fields", {})
        if "nodes" not in fields:
            continue
        document, variables = operation(ref, select=" { nodes { id } }")
        body = await gql(world.http, document, variables, token=world.a.token)
        assert "errors" not in body, body
        ids = {n["id"] for n in body["data"][ref.name]["nodes"]}
        if ids & foreign_ids:
            problems.append(f"{ref.name} lists B's rows {ids & foreign_ids}")
        if not ids:
            problems.append(f"{ref.name} lists nothing: the world should have A's rows")
        # Filters by a B id answer like a filter by a missing id: nothing.
        filter_arg = ref.field.args.get("filter")
        if filter_arg is None:
            continue
        filter_type = get_named_type(filter_arg.type)
        assert isinstance(filter_type, GraphQLInputObjectType)
        for name, input_field in filter_type.fields.items():
            if get_named_type(input_field.type).name != "ID":
                continue
            assert name in FILTER_ID_TYPES, f"{ref.name}.filter.{name}: which type does it name?"
            type_name = FILTER_ID_TYPES[name]
            if type_name is None or type_name not in world.b.ids:
                continue
            for value in (world.b.ids[type_name], new_id(type_name)):
                document, variables = operation(
                    ref, args={"filter": {name: value}}, select=" { nodes { id } }"
                )
                body = await gql(world.http, document, variables, token=world.a.token)
                if "errors" in body or body["data"][ref.name]["nodes"]:
                    problems.append(f"{ref.name}(filter: {{{name}: …}}) answered {body}")
    assert not problems, "\n".join(problems)
