"""External health (DESIGN §8): per-connection health state, circuit breaker, snapshots.

Every finished run is a signal: ``domain.connections.record_run`` calls ``observe_run`` in
the run's own transaction, so PROBE runs (the prober), TEST runs (``testConnection``) and
VERIFICATION runs (rotations) feed one state. The state is computed from the connection's
recent runs (the rolling window: at most ``window_max_calls`` runs of the last
``window`` seconds), not kept in memory, so every replica computes the same thing.

Circuit breaker, per connection:

- CLOSED → OPEN after ``failure_threshold`` (5) consecutive failures, or when at least
  ``minimum_calls`` (10) calls in the window since the circuit last opened failed at a rate of
  ``failure_rate`` (50 %) or more;
- OPEN → HALF_OPEN once ``half_open_after`` (30 s) has passed (the prober marks it when it
  claims the connection; the next call is the trial). The prober does not call the provider
  of an open circuit before then;
- HALF_OPEN → CLOSED when the trial succeeds, back to OPEN when it fails.

Status: UNHEALTHY while the circuit is not CLOSED or the last 3 probes failed; DEGRADED when
the window's error rate is ≥ ``degraded_error_rate`` (10 %) or its p95 latency is above the
provider's ``latency_threshold_ms``; else HEALTHY. The connection's own status follows
(HEALTHY → ACTIVE, otherwise DEGRADED; RETIRED connections are never touched). Only a change
of status emits ``ConnectionHealthChanged``; a recovery to HEALTHY resolves the connection's
open failure groups (``domain.failures``). A snapshot is written on every change of status or
circuit, and otherwise at most every ``snapshot_every``, for the health timeline.

All thresholds and timings are settings (``HealthPolicy.from_settings``, held by
``Services.health_policy``); the policy is passed to every action that records a run or a
failure, and carries the clock, so tests drive time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.clock import Clock, utcnow
from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import (
    CircuitState,
    ConnectionStatus,
    HealthStatus,
    RunKind,
    RunStatus,
)
from studio_integrations.core.errors import UserInputError
from studio_integrations.core.ids import new_id, type_of
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.persistence.health import (
    FailureFilter,
    FailureGroupRow,
    FailureRepository,
    HealthStateRepository,
)
from studio_integrations.persistence.models import (
    ConnectionHealth,
    HealthSnapshot,
    IntegrationConnection,
    IntegrationFailure,
    IntegrationRun,
    Provider,
)
from studio_integrations.persistence.repository import Page, PageRequest, TenantRepository

if TYPE_CHECKING:
    from studio_integrations.settings import Settings

UNHEALTHY_PROBE_FAILURES = 3
DEFAULT_LATENCY_THRESHOLD_MS = 2000


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    failure_threshold: int = 5
    failure_rate: float = 0.5
    minimum_calls: int = 10
    half_open_after: timedelta = timedelta(seconds=30)
    window: timedelta = timedelta(minutes=5)
    window_max_calls: int = 100
    degraded_error_rate: float = 0.10
    snapshot_every: timedelta = timedelta(minutes=5)
    probe_interval: timedelta = timedelta(seconds=60)
    # The failure that brings a group to this many occurrences escalates it (domain.failures).
    escalation_threshold: int = 5
    clock: Clock = field(default=utcnow, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        return cls(
            failure_threshold=settings.circuit_failure_threshold,
            failure_rate=settings.circuit_failure_rate,
            minimum_calls=settings.circuit_minimum_calls,
            half_open_after=timedelta(seconds=settings.circuit_half_open_seconds),
            window=timedelta(seconds=settings.health_window_seconds),
            degraded_error_rate=settings.health_degraded_error_rate,
            probe_interval=timedelta(seconds=settings.probe_interval_seconds),
            escalation_threshold=settings.failure_escalation_threshold,
        )


# --- The pure part: window, breaker, status -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished call, as the window sees it."""

    ok: bool
    at: datetime
    latency_ms: float | None = None
    kind: RunKind = RunKind.PROBE


@dataclass(frozen=True, slots=True)
class Breaker:
    circuit: CircuitState = CircuitState.CLOSED
    opened_at: datetime | None = None  # when it last opened (kept after it closes)
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class Evaluation:
    status: HealthStatus
    breaker: Breaker
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in (0, 100])."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def effective_circuit(breaker: Breaker, now: datetime, policy: HealthPolicy) -> CircuitState:
    """OPEN turns HALF_OPEN once ``half_open_after`` has passed."""
    if (
        breaker.circuit is CircuitState.OPEN
        and breaker.opened_at is not None
        and now >= breaker.opened_at + policy.half_open_after
    ):
        return CircuitState.HALF_OPEN
    return breaker.circuit


def next_breaker(
    previous: Breaker,
    latest_ok: bool,
    samples: Sequence[Sample],
    now: datetime,
    policy: HealthPolicy,
) -> Breaker:
    """The breaker after one more call (``latest_ok``); ``samples`` are the window's calls,
    newest first, the latest included."""
    consecutive = 0 if latest_ok else previous.consecutive_failures + 1
    circuit = effective_circuit(previous, now, policy)
    if circuit is CircuitState.HALF_OPEN:
        if latest_ok:
            return Breaker(CircuitState.CLOSED, previous.opened_at, 0)
        return Breaker(CircuitState.OPEN, now, consecutive)
    if circuit is CircuitState.OPEN:
        return Breaker(CircuitState.OPEN, previous.opened_at, consecutive)
    since = previous.opened_at
    counted = [s for s in samples if since is None or s.at > since]
    failures = sum(1 for s in counted if not s.ok)
    tripped = consecutive >= policy.failure_threshold or (
        len(counted) >= policy.minimum_calls and failures / len(counted) >= policy.failure_rate
    )
    if tripped:
        return Breaker(CircuitState.OPEN, now, consecutive)
    return Breaker(CircuitState.CLOSED, previous.opened_at, consecutive)


def evaluate(
    previous: Breaker,
    latest_ok: bool,
    recent: Sequence[Sample],
    now: datetime,
    policy: HealthPolicy,
    latency_threshold_ms: float,
) -> Evaluation:
    """Health after one more call. ``recent`` are the connection's newest calls, newest
    first (the latest included), at most ``window_max_calls``; the window keeps those of the
    last ``policy.window``."""
    # The call being observed always counts (its clock may differ from ``now``'s).
    window = list(recent[:1]) + [s for s in recent[1:] if s.at >= now - policy.window]
    breaker = next_breaker(previous, latest_ok, window, now, policy)
    failures = sum(1 for s in window if not s.ok)
    error_rate = failures / len(window) if window else 0.0
    latencies = [s.latency_ms for s in window if s.ok and s.latency_ms is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    probes = [s for s in recent if s.kind is RunKind.PROBE][:UNHEALTHY_PROBE_FAILURES]
    probes_failing = len(probes) == UNHEALTHY_PROBE_FAILURES and not any(p.ok for p in probes)
    if breaker.circuit is not CircuitState.CLOSED or probes_failing:
        status = HealthStatus.UNHEALTHY
    elif error_rate >= policy.degraded_error_rate or (
        p95 is not None and p95 > latency_threshold_ms
    ):
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.HEALTHY
    return Evaluation(status, breaker, p50, p95, round(error_rate, 4))


# --- Observing runs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthChange:
    connection_id: str
    previous_status: HealthStatus
    status: HealthStatus
    circuit_state: CircuitState


def _sample(run: IntegrationRun) -> Sample:
    return Sample(
        ok=run.status is RunStatus.SUCCEEDED,
        at=run.finished_at or run.started_at,
        latency_ms=run.latency_ms,
        kind=run.kind,
    )


def connection_status_for(health: HealthStatus) -> ConnectionStatus:
    return ConnectionStatus.ACTIVE if health is HealthStatus.HEALTHY else ConnectionStatus.DEGRADED


async def observe_run(
    session: AsyncSession, ctx: ActionContext, run: IntegrationRun, *, policy: HealthPolicy
) -> HealthChange | None:
    """Feed a just-recorded run into its connection's health (same transaction). Returns
    the change of status, if any. Retired connections are left alone."""
    now = policy.clock()
    connection = await TenantRepository(session, IntegrationConnection).get(run.connection_id)
    if connection is None or connection.status is ConnectionStatus.RETIRED:
        return None
    repo = HealthStateRepository(session)
    state = await repo.for_connection(connection.id)
    if state is None:
        state = ConnectionHealth(
            connection_id=connection.id,
            tenant_id=connection.tenant_id,
            status=HealthStatus.HEALTHY,
            circuit_state=CircuitState.CLOSED,
            error_rate=0.0,
            consecutive_failures=0,
            next_probe_at=now,
        )
        session.add(state)
    provider = await TenantRepository(session, Provider).get(connection.provider_id)
    threshold = provider.latency_threshold_ms if provider else DEFAULT_LATENCY_THRESHOLD_MS
    recent = [_sample(r) for r in await repo.recent_runs(connection.id, policy.window_max_calls)]
    previous = Breaker(
        state.circuit_state, state.circuit_opened_at, state.consecutive_failures or 0
    )
    result = evaluate(previous, run.status is RunStatus.SUCCEEDED, recent, now, policy, threshold)
    previous_status = state.status or HealthStatus.HEALTHY
    circuit_changed = result.breaker.circuit is not state.circuit_state
    state.status = result.status
    state.circuit_state = result.breaker.circuit
    state.circuit_opened_at = result.breaker.opened_at
    state.consecutive_failures = result.breaker.consecutive_failures
    state.latency_p50_ms = result.latency_p50_ms
    state.latency_p95_ms = result.latency_p95_ms
    state.error_rate = result.error_rate
    state.checked_at = now
    if run.kind is not RunKind.PROBE:
        # A passive signal is as fresh as a probe: the next probe can wait an interval.
        later = now + policy.probe_interval
        if state.next_probe_at is None or state.next_probe_at < later:
            state.next_probe_at = later
    if result.breaker.circuit is CircuitState.OPEN and result.breaker.opened_at is not None:
        # No probe before the circuit may half-open.
        half_open_at = result.breaker.opened_at + policy.half_open_after
        if state.next_probe_at is None or state.next_probe_at < half_open_at:
            state.next_probe_at = half_open_at
    changed = result.status is not previous_status
    last_snapshot = await repo.latest_snapshot_at(connection.id)
    if (
        changed
        or circuit_changed
        or last_snapshot is None
        or (now - last_snapshot >= policy.snapshot_every)
    ):
        session.add(
            HealthSnapshot(
                id=new_id("HealthSnapshot"),
                tenant_id=connection.tenant_id,
                connection_id=connection.id,
                status=result.status,
                circuit_state=result.breaker.circuit,
                latency_p50_ms=result.latency_p50_ms,
                latency_p95_ms=result.latency_p95_ms,
                error_rate=result.error_rate,
                checked_at=now,
            )
        )
    follow = connection_status_for(result.status)
    if connection.status is not follow:
        connection.status = follow
    await session.flush()
    if result.status is HealthStatus.HEALTHY:
        await FailureRepository(session).resolve_connection(connection.id, now)
    if not changed:
        return None
    emit_event(
        session,
        ctx,
        type=EventType.CONNECTION_HEALTH_CHANGED,
        subject_type="IntegrationConnection",
        subject_id=connection.id,
        data={
            "connectionId": connection.id,
            "providerId": connection.provider_id,
            "previousStatus": previous_status.value,
            "status": result.status.value,
            "circuitState": result.breaker.circuit.value,
            "connectionStatus": connection.status.value,
            "latencyMs": run.latency_ms,
            "latencyP50Ms": result.latency_p50_ms,
            "latencyP95Ms": result.latency_p95_ms,
            "errorRate": result.error_rate,
            "runId": run.id,
            "runKind": run.kind.value,
        },
    )
    return HealthChange(connection.id, previous_status, result.status, result.breaker.circuit)


# --- Queries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthFilter:
    provider_id: str | None = None
    status: HealthStatus | None = None
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionHealthView:
    connection: IntegrationConnection
    health: ConnectionHealth


@dataclass(frozen=True, slots=True)
class ProviderHealthView:
    provider_id: str
    status: HealthStatus
    connections: int
    healthy: int
    degraded: int
    unhealthy: int
    open_circuits: int
    latency_p95_ms: float | None
    error_rate: float
    checked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ExternalHealthView:
    connections: list[ConnectionHealthView]
    providers: list[ProviderHealthView]
    open_circuits: int


def provider_status(statuses: Sequence[HealthStatus]) -> HealthStatus:
    """A provider is HEALTHY when all its connections are, UNHEALTHY when none is healthy
    or degraded (every connection fails), otherwise DEGRADED."""
    if all(s is HealthStatus.HEALTHY for s in statuses):
        return HealthStatus.HEALTHY
    if all(s is HealthStatus.UNHEALTHY for s in statuses):
        return HealthStatus.UNHEALTHY
    return HealthStatus.DEGRADED


def _aggregate(provider_id: str, views: Sequence[ConnectionHealthView]) -> ProviderHealthView:
    statuses = [v.health.status for v in views]
    p95s = [v.health.latency_p95_ms for v in views if v.health.latency_p95_ms is not None]
    checked = [v.health.checked_at for v in views if v.health.checked_at is not None]
    return ProviderHealthView(
        provider_id=provider_id,
        status=provider_status(statuses),
        connections=len(views),
        healthy=statuses.count(HealthStatus.HEALTHY),
        degraded=statuses.count(HealthStatus.DEGRADED),
        unhealthy=statuses.count(HealthStatus.UNHEALTHY),
        open_circuits=sum(1 for v in views if v.health.circuit_state is CircuitState.OPEN),
        latency_p95_ms=max(p95s) if p95s else None,
        error_rate=round(sum(v.health.error_rate for v in views) / len(views), 4),
        checked_at=max(checked) if checked else None,
    )


def _check_id(value: str | None, type_name: str, field_name: str) -> None:
    if value is not None and type_of(value) != type_name:
        raise UserInputError(f"not an id of a {type_name}", field=field_name, code="INVALID_ID")


async def external_health(session: AsyncSession, flt: HealthFilter) -> ExternalHealthView:
    """Live connections' health (those checked at least once), per connection and per
    provider; ``open_circuits`` counts the connections whose circuit is OPEN."""
    _check_id(flt.provider_id, "Provider", "filter.providerId")
    _check_id(flt.connection_id, "IntegrationConnection", "filter.connectionId")
    rows = await HealthStateRepository(session).states(
        provider_id=flt.provider_id, status=flt.status, connection_id=flt.connection_id
    )
    views = [ConnectionHealthView(connection=c, health=h) for h, c in rows]
    by_provider: dict[str, list[ConnectionHealthView]] = {}
    for view in views:
        by_provider.setdefault(view.connection.provider_id, []).append(view)
    return ExternalHealthView(
        connections=views,
        providers=[_aggregate(pid, vs) for pid, vs in by_provider.items()],
        open_circuits=sum(1 for v in views if v.health.circuit_state is CircuitState.OPEN),
    )


def _check_failure_filter(flt: FailureFilter) -> None:
    _check_id(flt.connection_id, "IntegrationConnection", "filter.connectionId")
    if (
        flt.occurred_from is not None
        and flt.occurred_to is not None
        and flt.occurred_from >= flt.occurred_to
    ):
        raise UserInputError("from must be before to", field="filter.from", code="INVALID_RANGE")


async def list_failures(
    session: AsyncSession, flt: FailureFilter, page: PageRequest
) -> Page[IntegrationFailure]:
    _check_failure_filter(flt)
    return await FailureRepository(session).search(flt, page)


async def failure_groups(session: AsyncSession, flt: FailureFilter) -> list[FailureGroupRow]:
    _check_failure_filter(flt)
    return await FailureRepository(session).groups(flt)
