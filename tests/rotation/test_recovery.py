"""A process that dies mid-rotation leaves a PENDING/VERIFYING rotation with a lease; once
the lease has run out, the next rotateCredential or the scheduler resolves it to FAILED and
the credential is never half-promoted. While the lease runs, it still blocks a new rotation."""

from __future__ import annotations

from datetime import timedelta

import httpx

from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import RotationStatus
from studio_integrations.core.ids import new_id
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import Credential, CredentialRotation
from studio_integrations.services import Services
from studio_integrations.workers.rotation_scheduler import RotationScheduler
from tests.rotation.conftest import (
    AUDIT,
    ROTATION_NODE,
    World,
    establish,
    ok,
    register_credential,
    rotate,
)
from tests.support.live import LiveServer

NEW_KEY = "key-recovery-eeeeeeee"


async def leave_rotation(
    services: Services,
    credential_id: str,
    *,
    status: RotationStatus,
    lease: timedelta,
    new_version: str | None,
) -> str:
    """What a process that stopped mid-rotation leaves behind."""
    rotation_id = new_id("CredentialRotation")
    async with services.db.transaction(TenantScope.of("acme")) as session:
        credential = await session.get(Credential, credential_id)
        assert credential is not None
        session.add(
            CredentialRotation(
                id=rotation_id,
                tenant_id="acme",
                credential_id=credential_id,
                status=status,
                previous_version=credential.current_version,
                new_version=new_version,
                requested_by="bob",
                started_at=utcnow() - timedelta(minutes=15),
                lease_until=utcnow() + lease,
            )
        )
    return rotation_id


async def current_version(services: Services, credential_id: str) -> str:
    async with services.db.session(TenantScope.of("acme")) as session:
        credential = await session.get(Credential, credential_id)
        assert credential is not None
        return credential.current_version


async def test_next_rotation_resolves_an_abandoned_one_and_a_live_lease_blocks(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    vault = server.services.vault
    await establish(http, world)
    old = await current_version(server.services, world.credential_id)
    new = await vault.set_secret("fake-hr-key", NEW_KEY, tags={"studio-tenant": "acme"})
    world.accepted.add(NEW_KEY)

    # A live lease: another replica is still working on it.
    live_id = await leave_rotation(
        server.services,
        world.credential_id,
        status=RotationStatus.VERIFYING,
        lease=timedelta(minutes=5),
        new_version=new.version,
    )
    refused = await rotate(http, world.token, world.credential_id)
    assert [e["code"] for e in refused["userErrors"]] == ["ROTATION_IN_PROGRESS"]

    # Its lease runs out (the replica died): the next rotation resolves it and runs.
    async with server.services.db.transaction(TenantScope.of("acme")) as session:
        row = await session.get(CredentialRotation, live_id)
        assert row is not None
        row.lease_until = utcnow() - timedelta(seconds=1)
    assert await current_version(server.services, world.credential_id) == old  # never half-promoted
    payload = await rotate(http, world.token, world.credential_id)
    assert payload["rotation"]["status"] == "PROMOTED"
    assert payload["rotation"]["id"] != live_id
    assert payload["credential"]["currentVersion"] == new.version

    abandoned = (await ok(http, ROTATION_NODE, {"id": live_id}, world.token))["node"]
    assert abandoned["status"] == "FAILED"
    assert abandoned["failureReason"].startswith("ABANDONED")
    assert abandoned["finishedAt"] is not None and abandoned["leaseUntil"] is None
    events = (await ok(http, AUDIT, {"subjectId": world.credential_id}, world.token))[
        "auditEvents"
    ]["nodes"]
    failed = [e for e in events if e["type"] == "CredentialRotationFailed"]
    assert [(e["data"]["rotationId"], e["actor"]["kind"]) for e in failed] == [(live_id, "SYSTEM")]


async def test_the_scheduler_resolves_abandoned_rotations_and_disables_their_versions(
    server: LiveServer, http: httpx.AsyncClient, world: World
) -> None:
    services = server.services
    vault = services.vault
    credential_id, first = await register_credential(
        http, world.token, vault, "crashy-secret", "seed", strategy="GENERATED"
    )
    rotation_id = await leave_rotation(
        server.services,
        credential_id,
        status=RotationStatus.PENDING,
        lease=timedelta(minutes=5),
        new_version=None,
    )
    # The process wrote its generated version, then died before recording it.
    orphan = await vault.set_secret(
        "crashy-secret",
        "orphan-value",
        tags={"studio-tenant": "acme", "studio-rotation": rotation_id},
    )
    now = utcnow()
    clock = [now]
    scheduler = RotationScheduler(
        services.db, vault, services.provider_caller, clock=lambda: clock[0]
    )

    report = await scheduler.tick()  # lease still running
    assert report.abandoned == 0
    clock[0] = now + timedelta(minutes=6)
    report = await scheduler.tick()
    assert report.abandoned == 1
    assert (await scheduler.tick()).abandoned == 0  # resolved once

    node = (await ok(http, ROTATION_NODE, {"id": rotation_id}, world.token))["node"]
    assert node["status"] == "FAILED" and node["failureReason"].startswith("ABANDONED")
    assert await current_version(server.services, credential_id) == first
    versions = {v.version: v.enabled for v in await vault.list_versions("crashy-secret")}
    assert versions == {first: True, orphan.version: False}
