"""The circuit breaker and the status rules of DESIGN §8, on a controlled clock (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from studio_integrations.core.enums import CircuitState, HealthStatus, RunKind
from studio_integrations.domain.health import (
    Breaker,
    Evaluation,
    HealthPolicy,
    Sample,
    effective_circuit,
    evaluate,
    percentile,
    provider_status,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = HealthPolicy()
THRESHOLD_MS = 2000.0


class Connection:
    """Feeds calls one by one, as ``observe_run`` does, on a clock the test moves."""

    def __init__(self, policy: HealthPolicy = POLICY) -> None:
        self.policy = policy
        self.now = T0
        self.breaker = Breaker()
        self.samples: list[Sample] = []  # newest first
        self.last: Evaluation | None = None

    def call(
        self, ok: bool, latency: float = 100.0, kind: RunKind = RunKind.PROBE, advance: float = 1
    ) -> Evaluation:
        self.now += timedelta(seconds=advance)
        self.samples.insert(0, Sample(ok=ok, at=self.now, latency_ms=latency, kind=kind))
        self.last = evaluate(
            self.breaker, ok, self.samples[:100], self.now, self.policy, THRESHOLD_MS
        )
        self.breaker = self.last.breaker
        return self.last


def test_opens_after_five_consecutive_failures_half_opens_after_30s_and_closes() -> None:
    c = Connection()
    for _ in range(20):
        assert c.call(True).breaker.circuit is CircuitState.CLOSED
    circuits = [c.call(False).breaker.circuit for _ in range(5)]
    assert circuits == [CircuitState.CLOSED] * 4 + [CircuitState.OPEN]
    opened_at = c.breaker.opened_at
    assert opened_at == c.now
    assert c.last is not None and c.last.status is HealthStatus.UNHEALTHY

    # Open: a call meanwhile (a passive test) neither closes nor half-opens it.
    assert c.call(True, kind=RunKind.TEST, advance=10).breaker.circuit is CircuitState.OPEN
    assert effective_circuit(c.breaker, opened_at + timedelta(seconds=29), POLICY) is (
        CircuitState.OPEN
    )
    assert effective_circuit(c.breaker, opened_at + timedelta(seconds=30), POLICY) is (
        CircuitState.HALF_OPEN
    )

    # Half-open: a failed trial opens it again, from the trial's time.
    again = c.call(False, advance=25)
    assert again.breaker.circuit is CircuitState.OPEN
    assert again.breaker.opened_at == c.now

    # Half-open again: a successful trial closes it.
    closed = c.call(True, advance=30)
    assert closed.breaker.circuit is CircuitState.CLOSED
    assert closed.breaker.consecutive_failures == 0
    # Still DEGRADED while the window holds the failures; HEALTHY once they age out.
    assert closed.status is HealthStatus.DEGRADED
    assert c.call(True, advance=301).status is HealthStatus.HEALTHY


def test_opens_on_half_the_calls_failing_over_at_least_ten() -> None:
    c = Connection()
    for ok in [True, False] * 4 + [True]:  # 9 calls, never 5 failures in a row
        assert c.call(ok).breaker.circuit is CircuitState.CLOSED
    assert c.call(False).breaker.circuit is CircuitState.OPEN  # 10 calls, 5 failed


def test_rate_rule_counts_only_calls_since_the_circuit_last_opened() -> None:
    c = Connection()
    for _ in range(5):
        c.call(False)
    assert c.breaker.circuit is CircuitState.OPEN
    c.call(True, advance=31)  # the trial closes it
    # One failure after closing: 6 of the window's 7 calls failed, but only 2 calls were
    # made since the circuit opened, so it stays closed.
    assert c.call(False).breaker.circuit is CircuitState.CLOSED


def test_status_rules() -> None:
    # Last three probes failed: UNHEALTHY although the circuit is closed.
    c = Connection()
    for _ in range(30):
        c.call(True)
    evaluations = [c.call(False) for _ in range(3)]
    assert [e.status for e in evaluations] == [
        HealthStatus.HEALTHY,  # 1 of 31 calls: 3 % < 10 %
        HealthStatus.HEALTHY,
        HealthStatus.UNHEALTHY,
    ]
    assert evaluations[-1].breaker.circuit is CircuitState.CLOSED

    # Failed tests are not probes: they count for the error rate only.
    c = Connection()
    for _ in range(30):
        c.call(True)
    for _ in range(3):
        e = c.call(False, kind=RunKind.TEST)
    assert e.status is HealthStatus.HEALTHY  # 3 of 33 = 9 %
    assert c.call(False, kind=RunKind.TEST).status is HealthStatus.DEGRADED  # 4 of 34 ≥ 10 %

    # p95 latency over the provider's threshold: DEGRADED, HEALTHY again once it ages out.
    c = Connection()
    for _ in range(19):
        c.call(True, latency=100)
    assert c.call(True, latency=2500).status is HealthStatus.HEALTHY  # p95 = 100 (20 calls)
    slow = c.call(True, latency=2500)  # 21 calls: the 95th percentile is now 2500
    assert slow.status is HealthStatus.DEGRADED
    assert slow.latency_p95_ms == 2500
    assert slow.latency_p50_ms == 100
    assert slow.error_rate == 0
    assert c.call(True, latency=100, advance=301).status is HealthStatus.HEALTHY


def test_thresholds_come_from_the_policy() -> None:
    policy = HealthPolicy(failure_threshold=2, half_open_after=timedelta(seconds=5))
    c = Connection(policy)
    c.call(True)
    c.call(False)
    assert c.call(False).breaker.circuit is CircuitState.OPEN
    assert c.call(True, advance=5).breaker.circuit is CircuitState.CLOSED


def test_percentile_and_provider_status() -> None:
    assert percentile([], 95) is None
    assert percentile([5, 1, 3], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95
    healthy, degraded, unhealthy = (
        HealthStatus.HEALTHY,
        HealthStatus.DEGRADED,
        (HealthStatus.UNHEALTHY),
    )
    assert provider_status([healthy, healthy]) is healthy
    assert provider_status([healthy, unhealthy]) is degraded
    assert provider_status([unhealthy, unhealthy]) is unhealthy
