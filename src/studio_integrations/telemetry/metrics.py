"""Prometheus metrics, served by ``GET /metrics`` (``rest.metrics``).

One registry per process (``REGISTRY``, not prometheus_client's global one, so importing the
package registers nothing elsewhere). Labels are bounded: operation names are clipped to a
fixed set (``operation_label``), status codes become classes, categories are enums; tenant
and object ids are never labels, except on ``studio_tenant_requests_total`` when the
``STUDIO_METRICS_TENANT_LABELS`` setting asks for it. Gauges that describe shared state (the
backlogs, circuit states, pool, live subscriptions) are set when scraped.
"""

from __future__ import annotations

import re
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- requests -------------------------------------------------------------------------------
REQUESTS = Counter(
    "studio_requests_total",
    "HTTP requests by operation (GraphQL operation name, else the route) and outcome.",
    ("operation", "type", "outcome"),
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "studio_request_duration_seconds",
    "HTTP request latency by operation and outcome.",
    ("operation", "type", "outcome"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TENANT_REQUESTS = Counter(
    "studio_tenant_requests_total",
    "Requests per tenant and outcome (only with STUDIO_METRICS_TENANT_LABELS).",
    ("tenant", "outcome"),
    registry=REGISTRY,
)
RATE_LIMIT_REFUSALS = Counter(
    "studio_rate_limit_refusals_total",
    "Requests refused by a rate budget (RATE_LIMITED), by budget.",
    ("budget",),
    registry=REGISTRY,
)

# --- live subscriptions ---------------------------------------------------------------------
LIVE_SUBSCRIBERS = Gauge(
    "studio_live_subscribers", "Live subscription streams in this process.", registry=REGISTRY
)
LIVE_COHORTS = Gauge(
    "studio_live_cohorts",
    "Fan-out groups (per-tenant channels or cohorts) in this process.",
    registry=REGISTRY,
)
HUB_DROPS = Gauge(
    "studio_hub_dropped_subscribers",
    "Slow subscribers the fan-out hub dropped since start (a counter, read from the hub).",
    registry=REGISTRY,
)

# --- outbox relay ---------------------------------------------------------------------------
RELAY_PUBLISHED = Gauge(
    "studio_relay_published_events",
    "Events this process's relay published since start (a counter, read from the relay).",
    registry=REGISTRY,
)
RELAY_BACKLOG = Gauge(
    "studio_relay_backlog_events", "Committed events not yet published.", registry=REGISTRY
)
RELAY_LAG = Gauge(
    "studio_relay_lag_seconds",
    "Age of the oldest committed event not yet published (0 when none).",
    registry=REGISTRY,
)

# --- webhook dispatcher ---------------------------------------------------------------------
DISPATCH_BACKLOG = Gauge(
    "studio_webhook_backlog_deliveries",
    "Outbound deliveries due now (pending or retrying, next attempt reached).",
    registry=REGISTRY,
)
DISPATCH_LAG = Gauge(
    "studio_webhook_lag_seconds",
    "How long the longest-waiting due delivery has been due (0 when none).",
    registry=REGISTRY,
)
DISPATCH_IN_FLIGHT = Gauge(
    "studio_webhook_in_flight_deliveries",
    "Deliveries this process is sending right now.",
    registry=REGISTRY,
)
DISPATCH_ATTEMPTS = Counter(
    "studio_webhook_attempts_total",
    "Webhook delivery attempts by outcome: the receiver's status class (2xx…5xx) or the "
    "failure category when no answer came.",
    ("status_class",),
    registry=REGISTRY,
)

# --- health ---------------------------------------------------------------------------------
PROBE_RESULTS = Counter(
    "studio_probe_results_total",
    "Health probes by outcome (ok or the failure category).",
    ("outcome",),
    registry=REGISTRY,
)
CIRCUITS = Gauge("studio_circuits", "Connections by circuit state.", ("state",), registry=REGISTRY)

# --- credentials ----------------------------------------------------------------------------
ROTATIONS = Counter(
    "studio_rotations_total",
    "Credential rotations finished, by outcome (PROMOTED, FAILED).",
    ("outcome",),
    registry=REGISTRY,
)

# --- database -------------------------------------------------------------------------------
DB_POOL = Gauge(
    "studio_db_pool_connections",
    "Database pool connections by state (checked_out, idle, size, overflow).",
    ("state",),
    registry=REGISTRY,
)

SCRAPE_ERRORS = Counter(
    "studio_metrics_scrape_errors_total",
    "Scrapes whose database-derived gauges could not be refreshed.",
    registry=REGISTRY,
)

# --- bounded labels -------------------------------------------------------------------------
MAX_OPERATION_NAMES = 200
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
_names: set[str] = set()
_names_lock = threading.Lock()


def operation_label(name: str | None) -> str:
    """A GraphQL operation name as a label: the name when it is a plain identifier and one of
    the first ``MAX_OPERATION_NAMES`` seen, ``anonymous`` without one, else ``other``."""
    if not name:
        return "anonymous"
    if name in _names:
        return name
    if not _NAME.match(name):
        return "other"
    with _names_lock:
        if len(_names) >= MAX_OPERATION_NAMES:
            return "other"
        _names.add(name)
    return name


def status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status is not None and 100 <= status <= 599 else "none"
