"""``GET /metrics``: Prometheus text exposition of ``telemetry.metrics.REGISTRY``.

Counters and histograms move as things happen; the gauges of shared state (outbox and
delivery backlogs and their lag, circuit states: cross-tenant aggregates, no ids) are read
from the database when scraped, and this process's own state (live subscriptions, the
database pool) from the services. With ``STUDIO_METRICS_TOKEN`` set the route needs
``Authorization: Bearer <token>``; ``STUDIO_METRICS_ENABLED=false`` removes it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from studio_integrations.auth.tokens import bearer_token
from studio_integrations.core.clock import utcnow
from studio_integrations.core.enums import CircuitState, DeliveryStatus
from studio_integrations.core.errors import Unauthenticated
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import (
    ConnectionHealth,
    OutboxMessage,
    WebhookDelivery,
)
from studio_integrations.services import Services
from studio_integrations.telemetry import metrics

METRICS_PATH = "/metrics"
log = logging.getLogger(__name__)


def metrics_endpoint(services: Services) -> Callable[[Request], Awaitable[Response]]:
    token = services.settings.metrics_token

    async def endpoint(request: Request) -> Response:
        if token is not None:
            try:
                given = bearer_token(request.headers.get("authorization"))
            except Unauthenticated:
                given = ""
            if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
                return PlainTextResponse(
                    "metrics need the metrics token\n",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        await refresh(services)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return endpoint


async def refresh(services: Services) -> None:
    """Set the scrape-time gauges. A database outage leaves those gauges as they were (and
    counts a scrape error): the rest of the scrape still answers."""
    _process_state(services)
    try:
        await _shared_state(services)
    except Exception as exc:
        metrics.SCRAPE_ERRORS.inc()
        log.warning("metrics: database gauges not refreshed (%s)", type(exc).__name__)


def _process_state(services: Services) -> None:
    hub = services.hub
    if hub is not None:
        metrics.LIVE_SUBSCRIBERS.set(hub.live_subscriptions())
        metrics.LIVE_COHORTS.set(hub.cohort_count())
        metrics.HUB_DROPS.set(hub.dropped)
    metrics.RELAY_PUBLISHED.set(services.relay.published)
    pool = services.db.engine.pool
    for state, reader in (
        ("checked_out", "checkedout"),
        ("idle", "checkedin"),
        ("size", "size"),
        ("overflow", "overflow"),
    ):
        read = getattr(pool, reader, None)
        if callable(read):
            metrics.DB_POOL.labels(state).set(max(0, read()))


async def _shared_state(services: Services) -> None:
    now = utcnow()
    async with services.db.read_session(TenantScope.system_scope(), background=True) as session:
        backlog, oldest = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.published_at.is_(None)
                )
            )
        ).one()
        metrics.RELAY_BACKLOG.set(backlog)
        metrics.RELAY_LAG.set(_age(now, oldest))
        due, first_due = (
            await session.execute(
                select(func.count(), func.min(WebhookDelivery.next_attempt_at)).where(
                    WebhookDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.RETRYING)),
                    WebhookDelivery.next_attempt_at <= now,
                )
            )
        ).one()
        metrics.DISPATCH_BACKLOG.set(due)
        metrics.DISPATCH_LAG.set(_age(now, first_due))
        circuits = dict(
            (
                await session.execute(
                    select(ConnectionHealth.circuit_state, func.count()).group_by(
                        ConnectionHealth.circuit_state
                    )
                )
            ).all()
        )
        for state in CircuitState:
            metrics.CIRCUITS.labels(state.value).set(circuits.get(state, 0))


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0
