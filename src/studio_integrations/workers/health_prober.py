"""The health prober: every live connection's verification request, on an interval.

Work is claimed from the database (``connection_health.next_probe_at`` / ``lease_until``;
``FOR UPDATE SKIP LOCKED`` on PostgreSQL): a claim moves the connection's next probe past a
short lease, so replicas never probe one connection twice per interval, and a replica that
dies mid-probe leaves work another replica takes over once the lease ends. After the probe
the next one is due one interval after the claim (or when an open circuit may half-open,
whichever is later).

Each probe is three steps, and no transaction is held over the provider call: read the plan
(connection, provider, credential) in a short tenant-scoped session; call the provider with
a ``probe_timeout`` budget for every attempt together; record a PROBE run with
``domain.connections.record_run`` (which feeds ``domain.health``) and release the claim, in
one transaction. Probes run ``concurrency`` at a time. A connection whose circuit is OPEN is
not called until it may half-open; then the probe is the trial call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import timedelta

from studio_integrations.core.clock import Clock, utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import (
    CircuitState,
    ConnectionStatus,
    FailureCategory,
    RunKind,
)
from studio_integrations.domain.connections import (
    CallPlan,
    call_provider,
    failed_outcome,
    plan_for,
    record_run,
)
from studio_integrations.domain.health import Breaker, HealthPolicy, effective_circuit
from studio_integrations.outbound.provider_calls import CallOutcome, ProviderCaller
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.health import Claim, HealthStateRepository
from studio_integrations.persistence.models import IntegrationConnection
from studio_integrations.persistence.repository import TenantRepository
from studio_integrations.telemetry import metrics
from studio_integrations.telemetry.tracing import span
from studio_integrations.vault.base import SecretStore
from studio_integrations.workers.stopping import finish

log = logging.getLogger(__name__)
# Time for the vault and the write around the call, on top of the call's own budget.
LEASE_MARGIN_SECONDS = 10.0


class HealthProber:
    def __init__(
        self,
        db: Database,
        vault: SecretStore,
        caller: ProviderCaller,
        *,
        interval: float,
        timeout: float = 5.0,
        concurrency: int = 10,
        policy: HealthPolicy | None = None,
        clock: Clock | None = None,
        name: str = "prober",
    ) -> None:
        self._db = db
        self._vault = vault
        self._caller = caller
        self.interval = timedelta(seconds=interval)
        self.timeout = timeout
        self.concurrency = concurrency
        self.policy = policy or HealthPolicy()
        self._clock = clock or self.policy.clock
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._calls: set[asyncio.Future[CallOutcome]] = set()  # provider calls in flight
        self.probed = 0  # probes this instance made (tests and metrics)
        self.probed_ids: list[str] = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout + LEASE_MARGIN_SECONDS)

    @property
    def poll_seconds(self) -> float:
        return min(1.0, self.interval.total_seconds() / 4)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"health-{self.name}")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop within ``grace`` seconds: no new rounds, and the provider calls in flight are
        cancelled (their claims released, unrecorded); the database work in hand finishes.
        Only a loop still running at the deadline is cancelled: a cancellation inside an
        SQLite statement can leave the connection, and the write lock with it, to the
        garbage collector, and every other writer of the process (the outbox relay) waits."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        for call in list(self._calls):
            call.cancel()
        await finish(task, grace)
        self._task = None

    async def run(self) -> None:
        while not self._stopping:
            try:
                count = await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("health prober: a round failed", exc_info=True)
                count = 0
            if count < self.concurrency:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_seconds)
                self._wakeup.clear()

    async def probe_once(self) -> int:
        """Claim up to ``concurrency`` due connections and probe them; returns how many."""
        async with self._db.transaction(TenantScope.system_scope(), background=True) as session:
            claims = await HealthStateRepository(session).claim_due(
                self._clock(), self.concurrency, self.lease, self.interval
            )
        if claims:
            await asyncio.gather(*(self._probe_guarded(c) for c in claims))
        return len(claims)

    async def _probe_guarded(self, claim: Claim) -> None:
        try:
            with span("health.probe", {"studio.connection_id": claim.connection_id}):
                await self.probe(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The claim lapses with its lease, and the connection is probed again then.
            log.warning("health prober: probing %s failed", claim.connection_id, exc_info=True)

    async def probe(self, claim: Claim) -> None:
        scope = TenantScope.of(claim.tenant_id)
        ctx = ActionContext.system(claim.tenant_id)
        # Reads only: on SQLite a write-intent session would hold the write lock, and the
        # release below (another connection) would wait out the busy timeout for it.
        async with self._db.read_session(scope, background=True) as session:
            connection = await TenantRepository(session, IntegrationConnection).get(
                claim.connection_id
            )
            state = await HealthStateRepository(session).for_connection(claim.connection_id)
            if connection is None or connection.status is ConnectionStatus.RETIRED:
                return  # never probed again: retired connections are not claimed
            assert state is not None
            breaker = Breaker(state.circuit_state, state.circuit_opened_at)
            circuit = effective_circuit(breaker, self._clock(), self.policy)
            not_before = None
            if circuit is CircuitState.OPEN:
                # Not yet: the circuit half-opens later (an earlier claim raced the opening).
                assert state.circuit_opened_at is not None
                not_before = state.circuit_opened_at + self.policy.half_open_after
            else:
                plan = await plan_for(session, connection)
            half_open = state.circuit_state is CircuitState.OPEN  # and it may half-open now
        if not_before is not None:
            async with self._db.transaction(scope, background=True) as write:
                await HealthStateRepository(write).release(claim.connection_id, not_before)
            return
        if half_open:
            # Visible while the trial call runs; the run's outcome closes or re-opens it.
            async with self._db.transaction(scope, background=True) as write:
                row = await HealthStateRepository(write).for_connection(claim.connection_id)
                if row is not None and row.circuit_state is CircuitState.OPEN:
                    row.circuit_state = CircuitState.HALF_OPEN
        if isinstance(plan, CallPlan):
            # One attempt within the probe timeout (DESIGN §8: 5 s): a probe is a sample,
            # and retrying would hide the failures the circuit breaker must count.
            request = dataclasses.replace(
                plan.request,
                timeout=min(plan.request.timeout, self.timeout),
                total_timeout=self.timeout,
                max_attempts=1,
            )
            plan = dataclasses.replace(plan, request=request)
        started_at = utcnow()
        call = asyncio.ensure_future(call_provider(self._caller, self._vault, plan))
        self._calls.add(call)
        try:
            await asyncio.wait([call], timeout=self.timeout + 1.0)
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            self._calls.discard(call)
        if not call.done():
            call.cancel()
            outcome = failed_outcome(
                FailureCategory.TIMEOUT, f"the probe did not finish within {self.timeout:g} s"
            )
        elif call.cancelled():  # stopping: not a sample; the next probe is due as usual
            async with self._db.transaction(scope, background=True) as write:
                await HealthStateRepository(write).release(
                    claim.connection_id, claim.claimed_at + self.interval
                )
            return
        else:
            outcome = call.result()
        result = outcome.category.value if outcome.category else "ok"
        metrics.PROBE_RESULTS.labels(result).inc()
        log.info(
            "health probe",
            extra={
                "tenant": claim.tenant_id,
                "connection_id": claim.connection_id,
                "status": outcome.status,
                "outcome": result,
                "latency_ms": outcome.latency_ms,
            },
        )
        async with self._db.transaction(scope, background=True) as session:
            await record_run(
                session,
                ctx,
                connection_id=claim.connection_id,
                kind=RunKind.PROBE,
                outcome=outcome,
                credential_version=plan.secret_version if isinstance(plan, CallPlan) else None,
                started_at=started_at,
                policy=self.policy,
            )
            repo = HealthStateRepository(session)
            state = await repo.for_connection(claim.connection_id)
            due = claim.claimed_at + self.interval
            if (
                state is not None
                and state.circuit_state is CircuitState.OPEN
                and state.circuit_opened_at is not None
            ):
                due = max(due, state.circuit_opened_at + self.policy.half_open_after)
            await repo.release(claim.connection_id, due)
        self.probed += 1
        self.probed_ids.append(claim.connection_id)
