"""Audit completeness, enumerated from the schema's mutation list: every successful governed
mutation writes exactly one canonical event with actor, tenant, trace id and subject."""

from __future__ import annotations

from sqlalchemy import select

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import AuditEvent
from tests.matrix.cases import CASES
from tests.matrix.conftest import MATRIX, World
from tests.matrix.schema_walk import operation, root_fields
from tests.support.graphql import gql

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

pytestmark = MATRIX


async def test_each_successful_mutation_writes_exactly_one_canonical_event(world: World) -> None:
    db = world.server.services.db
    problems: list[str] = []
    for ref in root_fields("mutation"):
        case = CASES[ref.name]
        variables = {"input": await case.build(world, world.a)}
        async with db.session(TenantScope.system_scope()) as session:
            last = (
                await session.execute(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
            ).scalar()
        document, variables = operation(
            ref,
            args=variables,
            select=f" {{ {case.payload_object} {{ id }} userErrors {{ code message }} }}",
        )
        body = await gql(
            world.http,
            document,
            variables,
            token=world.a.token,
            headers={"traceparent": TRACEPARENT},
        )
        payload = (body.get("data") or {}).get(ref.name)
        if "errors" in body or payload is None or payload["userErrors"]:
            problems.append(f"{ref.name}: the success case failed: {body}")
            continue
        async with db.session(TenantScope.system_scope()) as session:
            stmt = select(AuditEvent).order_by(AuditEvent.id)
            if last is not None:
                stmt = stmt.where(AuditEvent.id > last)
            events = list((await session.execute(stmt)).scalars())
        if len(events) != 1:
            problems.append(f"{ref.name}: {len(events)} events {[e.type for e in events]}")
            continue
        event = events[0]
        expected = (case.event, "acme", "alice", TRACE_ID, payload[case.payload_object]["id"])
        actual = (
            event.type,
            event.tenant_id,
            event.actor_subject,
            event.trace_id,
            event.subject_id,
        )
        if actual != expected:
            problems.append(f"{ref.name}: {actual} != {expected}")
    assert not problems, "\n".join(problems)
