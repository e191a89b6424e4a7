"""The rotation scheduler: one tick every ``STUDIO_ROTATION_SCHEDULER_INTERVAL_SECONDS``.

A tick, with the time taken from an injected ``clock`` (tests drive it by hand):

1. resolves rotations whose lease ran out (their process died) to FAILED
   (``domain.rotation.resolve_abandoned``; rows claimed ``FOR UPDATE SKIP LOCKED``);
2. raises ``CredentialExpiring`` (reason EXPIRY_WARNING) once per credential version that
   entered its expiry warning window (``warn_expiring``; SKIP LOCKED, remembered in
   ``Credential.expiry_warned_version``);
3. for credentials whose cadence has passed: GENERATED ones are rotated now
   (``rotate_credential`` as the system actor; its claim keeps two replicas from both
   rotating, the loser just skips), unless their last rotation failed less than
   ``retry_after`` ago; EXTERNAL ones get a ``CredentialExpiring`` (reason ROTATION_DUE)
   alert that a new version must be put into the vault — once per current version.

Every step runs as ``ActionContext.system(tenant)``. Errors of one step are logged and the
next tick tries again. ``stop()`` lets a tick in hand finish within its grace and cancels
the loop only after it (as ``HealthProber.stop``: never inside a statement if it can help it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from studio_integrations.core.clock import Clock, utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import RotationStrategy
from studio_integrations.core.errors import UserInputError
from studio_integrations.domain import rotation as domain
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.outbound.provider_calls import ProviderCaller
from studio_integrations.persistence.db import Database, TenantScope, TenantSessions
from studio_integrations.telemetry.tracing import span
from studio_integrations.vault.base import SecretStore
from studio_integrations.workers.stopping import finish

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class TickReport:
    abandoned: int = 0
    expiring: int = 0
    rotated: int = 0
    due_alerts: int = 0


class RotationScheduler:
    def __init__(
        self,
        db: Database,
        vault: SecretStore,
        caller: ProviderCaller,
        *,
        interval_seconds: float = 300.0,
        clock: Clock = utcnow,
        lease: timedelta = domain.DEFAULT_LEASE,
        retry_after: timedelta = DEFAULT_RETRY_AFTER,
        policy: HealthPolicy | None = None,
    ) -> None:
        self._db = db
        self._policy = policy or HealthPolicy()
        self._vault = vault
        self._caller = caller
        self._interval = interval_seconds
        self.clock = clock
        self._lease = lease
        self._retry_after = retry_after
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.ticks = 0

    def _system(self) -> TenantSessions:
        return TenantSessions(self._db, TenantScope.system_scope())

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="rotation-scheduler")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop within ``grace`` seconds: the loop leaves after the tick in hand (a rotation
        it started is not left half-done if it can finish); cancelled only at the deadline,
        when the rotation's lease lets ``resolve_abandoned`` finish it elsewhere."""
        task = self._task
        if task is None:
            return
        self._stopping.set()
        await finish(task, grace)
        self._task = None

    async def run(self) -> None:
        # The first tick comes one interval after start: a replica that just started has
        # nothing more urgent than the running ones, and start-up stays quiet.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rotation scheduler tick failed; trying again next interval")

    async def tick(self) -> TickReport:
        now = self.clock()
        abandoned = await domain.resolve_abandoned(
            self._system(), self._vault, now, policy=self._policy
        )
        expiring = await domain.warn_expiring(self._system(), now)
        rotated = due_alerts = 0
        for tenant_id, credential_id, strategy in await domain.due_credentials(self._system(), now):
            if strategy is RotationStrategy.EXTERNAL:
                due_alerts += await domain.alert_due_external(self._system(), credential_id, now)
                continue
            if await domain.recently_failed(self._system(), credential_id, now - self._retry_after):
                continue
            try:
                with span("rotation.scheduled", {"studio.credential_id": credential_id}):
                    result = await domain.rotate_credential(
                        TenantSessions(self._db, TenantScope.of(tenant_id)),
                        ActionContext.system(tenant_id),
                        vault=self._vault,
                        caller=self._caller,
                        credential_id=credential_id,
                        policy=self._policy,
                        clock=self.clock,
                        lease=self._lease,
                    )
            except UserInputError as exc:  # e.g. ROTATION_IN_PROGRESS on another replica
                log.info("scheduled rotation of %s skipped: %s", credential_id, exc.code)
                continue
            log.info(
                "scheduled rotation %s of %s: %s",
                result.rotation.id,
                credential_id,
                result.rotation.status.value,
            )
            rotated += 1
        self.ticks += 1
        return TickReport(abandoned, expiring, rotated, due_alerts)
