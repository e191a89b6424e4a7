"""The scope matrix, enumerated from the live schema: every root field and every guarded
object field with exactly its scope (works) and with every scope but that one (FORBIDDEN;
for mutations nothing changes and no event is written); ``viewer.can`` and each
``viewerCan`` agree with what the server permits."""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLNonNull, Undefined

from studio_integrations.auth.scopes import ACTION_SCOPES
from studio_integrations.persistence.models import (
    Credential,
    ExternalApiClient,
    IntegrationConnection,
    IntegrationRun,
    Provider,
)
from studio_integrations.resolvers.node import NODE_TYPES
from tests.matrix.cases import CASES
from tests.matrix.conftest import MATRIX, World, trail, without
from tests.matrix.schema_walk import (
    FieldRef,
    guarded_object_fields,
    operation,
    root_fields,
    selection,
)
from tests.support.graphql import error_codes, gql
from tests.support.rows import row_counts
from tests.support.ws import init, receive, send, ws_connect

# Which action each viewerCan flag stands for.
VIEWER_CAN_ACTIONS: dict[tuple[str, str], str] = {
    ("ConnectionViewerCan", "test"): "testConnection",
    ("ConnectionViewerCan", "update"): "updateConnection",
    ("ConnectionViewerCan", "retire"): "retireConnection",
    ("CredentialViewerCan", "rotate"): "rotateCredential",
    ("CredentialViewerCan", "setRotationPolicy"): "setRotationPolicy",
    ("ProviderViewerCan", "registerApiClient"): "registerApiClient",
    ("WebhookSubscriptionViewerCan", "update"): "updateWebhookSubscription",
    ("WebhookSubscriptionViewerCan", "rotateSigningSecret"): "rotateWebhookSigningSecret",
    ("WebhookDeliveryViewerCan", "replay"): "replayWebhookDelivery",
    ("IntegrationFailureViewerCan", "retest"): "testConnection",
}

pytestmark = MATRIX


async def _state(world: World) -> tuple[Any, ...]:
    db = world.server.services.db
    rows = await row_counts(
        db,
        providers=Provider,
        clients=ExternalApiClient,
        credentials=Credential,
        connections=IntegrationConnection,
        runs=IntegrationRun,
    )
    return (await trail(db), tuple(sorted(rows.items())))


async def test_root_queries_and_mutations(world: World) -> None:
    problems: list[str] = []
    tw = world.a
    for kind in ("query", "mutation"):
        for ref in root_fields(kind):
            scope = ref.scope
            if scope is None:
                continue
            if kind == "mutation":
                variables = {"input": await CASES[ref.name].build(world, tw)}
                document, variables = operation(
                    ref, args=variables, select=" { userErrors { field code message } }"
                )
            else:
                document, variables = operation(ref)
            # Every scope but the one the field needs: FORBIDDEN, nothing changed.
            before = await _state(world)
            body = await gql(
                world.http, document, variables, token=world.make_token(scopes=without(scope))
            )
            if error_codes(body) != ["FORBIDDEN"] or (body.get("data") or {}).get(ref.name):
                problems.append(f"{kind} {ref.name} without {scope}: {json.dumps(body)[:300]}")
            if await _state(world) != before:
                problems.append(f"{kind} {ref.name} without {scope} changed something")
            # Exactly that scope: works.
            body = await gql(world.http, document, variables, token=world.make_token(scopes=scope))
            data = (body.get("data") or {}).get(ref.name)
            if "errors" in body or data is None:
                problems.append(f"{kind} {ref.name} with {scope}: {json.dumps(body)[:300]}")
            elif kind == "mutation" and data["userErrors"]:
                problems.append(f"mutation {ref.name} with {scope}: {data['userErrors']}")
    assert not problems, "\n".join(problems)


async def test_guarded_object_fields(world: World) -> None:
    problems: list[str] = []
    tw = world.a
    for ref in guarded_object_fields():
        scope = ref.scope
        assert scope is not None
        document = (
            f"query ($id: ID!) {{ node(id: $id) {{ id ... on {ref.parent} "
            f"{{ {_field_call(ref)} }} }} }}"
        )
        variables = {"id": tw.ids[ref.parent]}
        body = await gql(
            world.http, document, variables, token=world.make_token(scopes=without(scope))
        )
        node = (body.get("data") or {}).get("node")
        if NODE_TYPES[ref.parent].scope == scope:
            # The field repeats its type's own guard (defence in depth for other paths to
            # the object): without the scope the whole node is refused.
            if node is not None or error_codes(body) != ["FORBIDDEN"]:
                problems.append(f"{ref.parent} without {scope}: {json.dumps(body)[:300]}")
        else:
            forbidden = [e for e in body.get("errors") or [] if e.get("path") == ["node", ref.name]]
            if node is None or node.get(ref.name) is not None or len(forbidden) != 1:
                problems.append(
                    f"{ref.parent}.{ref.name} without {scope}: {json.dumps(body)[:300]}"
                )
            elif forbidden[0]["extensions"]["code"] != "FORBIDDEN":
                problems.append(f"{ref.parent}.{ref.name} without {scope}: {forbidden}")
        body = await gql(world.http, document, variables, token=world.make_token(scopes="all"))
        if "errors" in body or body["data"]["node"] is None:
            problems.append(f"{ref.parent}.{ref.name} with all scopes: {json.dumps(body)[:300]}")
    assert not problems, "\n".join(problems)


def _field_call(ref: FieldRef) -> str:
    required = [
        n
        for n, a in ref.field.args.items()
        if isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined
    ]
    assert not required, f"{ref.parent}.{ref.name}: teach the matrix its required arguments"
    return ref.name + selection(ref.field)


async def test_subscriptions(world: World) -> None:
    problems: list[str] = []
    for ref in root_fields("subscription"):
        scope = ref.scope
        assert scope is not None
        document, variables = operation(ref)
        for scopes, allowed in ((without(scope), False), (scope.value, True)):
            async with ws_connect(world.server.url.replace("http", "ws") + "/graphql") as ws:
                ack = await init(ws, world.make_token(scopes=scopes))
                assert ack["type"] == "connection_ack", ack
                await send(
                    ws,
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": document, "variables": variables},
                    },
                )
                await send(ws, {"type": "ping"})
                first = await receive(ws)
                if first["type"] == "pong" and not allowed:
                    first = await receive(ws)
                if allowed and first["type"] not in ("pong", "next"):
                    problems.append(f"subscription {ref.name} with {scope}: {first}")
                if not allowed and (
                    first["type"] != "error"
                    or first["payload"][0]["extensions"]["code"] != "FORBIDDEN"
                ):
                    problems.append(f"subscription {ref.name} without {scope}: {first}")
    assert not problems, "\n".join(problems)


async def test_viewer_can_agrees_with_the_guards(world: World) -> None:
    can_fields = " ".join(ACTION_SCOPES)
    for action, scope in ACTION_SCOPES.items():
        for scopes, expected in ((without(scope), False), (scope.value, True)):
            body = await gql(
                world.http,
                f"{{ viewer {{ can {{ {can_fields} }} }} }}",
                token=world.make_token(scopes=scopes),
            )
            assert body["data"]["viewer"]["can"][action] is expected, (action, scopes)


async def test_object_viewer_can_agrees_with_the_guards(world: World) -> None:
    from tests.matrix.schema_walk import GRAPHQL

    flags = sorted(
        (name, field_name)
        for name, t in GRAPHQL.type_map.items()
        if name.endswith("ViewerCan") and name != "ViewerCan"
        for field_name in getattr(t, "fields", {})
    )
    assert flags == sorted(VIEWER_CAN_ACTIONS), "map every viewerCan flag to its action"
    owners = {
        "ConnectionViewerCan": "IntegrationConnection",
        "CredentialViewerCan": "Credential",
        "ProviderViewerCan": "Provider",
        "WebhookSubscriptionViewerCan": "WebhookSubscription",
        "WebhookDeliveryViewerCan": "WebhookDelivery",
        "IntegrationFailureViewerCan": "IntegrationFailure",
    }
    tw = world.a
    for (can_type, flag), action in VIEWER_CAN_ACTIONS.items():
        owner = owners[can_type]
        document = f"query ($id: ID!) {{ node(id: $id) {{ ... on {owner} {{ viewerCan {{ {flag} }} }} }} }}"
        scope = ACTION_SCOPES[action]
        body = await gql(
            world.http,
            document,
            {"id": tw.ids[owner]},
            token=world.make_token(scopes=without(scope)),
        )
        if body["data"]["node"] is not None:  # the owner may need the missing scope to be read
            assert body["data"]["node"]["viewerCan"][flag] is False, (can_type, flag)
        body = await gql(world.http, document, {"id": tw.ids[owner]}, token=world.make_token())
        assert body["data"]["node"]["viewerCan"][flag] is True, (can_type, flag)
