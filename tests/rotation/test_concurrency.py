"""One rotation per credential at a time, across replicas.

- Over HTTP with a provider call held open: while rotation A verifies, its status reads
  VERIFYING by id, and a second rotateCredential (or the REST alias) gets
  ROTATION_IN_PROGRESS; released, A is PROMOTED.
- Two replicas' worth of sessions racing on PostgreSQL: both pass the first check before
  either claims (a barrier in the vault read between them); the credential's row lock lets
  exactly one rotation run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from studio_integrations.core.context import ActionContext, Actor
from studio_integrations.core.enums import ActorKind
from studio_integrations.core.errors import UserInputError
from studio_integrations.domain import rotation as domain
from studio_integrations.persistence.db import TenantScope, TenantSessions
from studio_integrations.services import Services
from studio_integrations.vault.base import SecretProperties
from tests.rotation.conftest import (
    CREDENTIAL,
    ROTATION_NODE,
    GatedCaller,
    World,
    counts,
    establish,
    ok,
    rotate,
)
from tests.support.backends import Backend

NEW_KEY = "key-concurrent-dddddddd"


async def test_a_second_rotation_while_one_runs_is_refused(
    services: Services, http: httpx.AsyncClient, world: World
) -> None:
    await establish(http, world)
    new = await services.vault.set_secret("fake-hr-key", NEW_KEY, tags={"studio-tenant": "acme"})
    world.accepted.add(NEW_KEY)
    gated = GatedCaller(services.provider_caller)
    services.provider_caller = gated  # type: ignore[assignment]
    try:
        first = asyncio.create_task(rotate(http, world.token, world.credential_id))
        await asyncio.wait_for(gated.entered.wait(), 10)

        # Observable while it runs.
        credential = (await ok(http, CREDENTIAL, {"id": world.credential_id}, world.token))["node"]
        running = credential["lastRotation"]
        assert running["status"] == "VERIFYING"
        node = (await ok(http, ROTATION_NODE, {"id": running["id"]}, world.token))["node"]
        assert (node["status"], node["newVersion"]) == ("VERIFYING", new.version)
        assert node["leaseUntil"] is not None and node["finishedAt"] is None

        before = await counts(services.db)
        second = await rotate(http, world.token, world.credential_id)
        assert second["rotation"] is None
        assert [(e["field"], e["code"]) for e in second["userErrors"]] == [
            ("input.credentialId", "ROTATION_IN_PROGRESS")
        ]
        response = await http.post(
            "/integrations/credentials/rotate",
            json={"credentialId": world.credential_id},
            headers={"Authorization": f"Bearer {world.token}"},
        )
        assert response.status_code == 409
        assert response.json()["userErrors"][0]["code"] == "ROTATION_IN_PROGRESS"
        assert await counts(services.db) == before  # refusals write nothing

        gated.release()
        payload = await asyncio.wait_for(first, 10)
    finally:
        gated.release()
        services.provider_caller = gated.inner
    assert payload["rotation"]["status"] == "PROMOTED"
    assert payload["rotation"]["id"] == running["id"]
    assert payload["credential"]["currentVersion"] == new.version


class BarrierVault:
    """A vault whose ``list_versions`` waits until ``parties`` callers are inside it: both
    rotations have passed their first check before either claims."""

    def __init__(self, inner: Any, parties: int) -> None:
        self.inner = inner
        self.barrier = asyncio.Barrier(parties)

    async def list_versions(self, name: str) -> list[SecretProperties]:
        versions: list[SecretProperties] = await self.inner.list_versions(name)
        await asyncio.wait_for(self.barrier.wait(), 10)
        return versions

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_two_racing_rotations_on_postgres_exactly_one_runs(
    backend: Backend, services: Services, http: httpx.AsyncClient, world: World
) -> None:
    if backend.name != "postgres":
        pytest.skip("the two-session race is about PostgreSQL's row lock")
    await establish(http, world)
    new = await services.vault.set_secret("fake-hr-key", NEW_KEY, tags={"studio-tenant": "acme"})
    world.accepted.add(NEW_KEY)
    vault = BarrierVault(services.vault, 2)
    gated = GatedCaller(services.provider_caller)

    async def replica(subject: str) -> domain.RotationResult:
        # Each "replica" has its own sessions (its own connections from the pool).
        return await domain.rotate_credential(
            TenantSessions(services.db, TenantScope.of("acme")),
            ActionContext("acme", Actor(subject, ActorKind.USER), f"{subject:0<32}"[:32]),
            vault=vault,  # type: ignore[arg-type]
            caller=gated,  # type: ignore[arg-type]
            credential_id=world.credential_id,
            policy=services.health_policy,
        )

    tasks = [asyncio.create_task(replica("a")), asyncio.create_task(replica("b"))]
    try:
        done, pending = await asyncio.wait(tasks, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        (loser,) = done
        with pytest.raises(UserInputError) as refused:
            loser.result()
        assert refused.value.code == "ROTATION_IN_PROGRESS"
        await asyncio.wait_for(gated.entered.wait(), 10)  # the winner goes on to verify
        gated.release()
        (winner,) = pending
        result = await asyncio.wait_for(winner, 10)
    finally:
        gated.release()
        for task in tasks:
            task.cancel()
    assert result.rotation.status.value == "PROMOTED"
    assert result.credential.current_version == new.version
    assert (await counts(services.db)).rotations == 1
