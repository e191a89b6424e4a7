"""Logs: one JSON line per request and per worker action, with the trace and span ids, the
caller's tenant and subject, the operation and its outcome."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from studio_integrations.log_config import configure_logging
from tests.conftest import TokenFactory
from tests.fakes.receiver import WebhookReceiver
from tests.providers.conftest import REGISTER_PROVIDER, provider_input
from tests.support.graphql import gql
from tests.support.live import LiveServer
from tests.webhooks.conftest import create_subscription, eventually

TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4737"
TRACEPARENT = f"00-{TRACE_ID}-10f067aa0ba902b8-01"

# These follow a mutation down to its webhook send and probes: the workers run.
pytestmark = pytest.mark.workers("all")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The service's logging set up as ``serve`` sets it up, writing to a buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers = handlers
        root.setLevel(level)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_request_and_worker_lines_carry_the_trace(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    receiver: WebhookReceiver,
    log_lines: io.StringIO,
) -> None:
    token = make_token(tenant="acme", subject="alice", scopes="all")
    await create_subscription(http, token, receiver.url, eventType="ProviderRegistered")
    body = await gql(
        http,
        REGISTER_PROVIDER.replace("mutation (", "mutation RegisterAcme("),
        {"input": provider_input()},
        token=token,
        headers={"traceparent": TRACEPARENT},
    )
    assert body["data"]["registerProvider"]["userErrors"] == []
    await gql(http, "{ viewer { subject } }", token=None, expect_status=401)

    async def attempt_line() -> list[dict[str, Any]] | None:
        lines = [line for line in parsed(log_lines) if line.get("event") == "webhook attempt"]
        return lines or None

    [attempt] = await eventually(attempt_line, what="the webhook attempt's log line")
    lines = parsed(log_lines)
    [request] = [
        line
        for line in lines
        if line.get("event") == "request" and line.get("operation") == "RegisterAcme"
    ]
    assert request["trace_id"] == TRACE_ID
    assert len(request["span_id"]) == 16 and request["span_id"] != "10f067aa0ba902b8"
    assert request["tenant"] == "acme" and request["subject"] == "alice"
    assert request["operation_type"] == "mutation" and request["outcome"] == "ok"
    assert request["status"] == 200 and request["method"] == "POST"
    assert request["level"] == "info" and request["logger"] == "studio_integrations.request"
    # The delivery's attempt is logged under the event's (that request's) trace.
    assert attempt["trace_id"] == TRACE_ID
    assert attempt["tenant"] == "acme" and attempt["outcome"] == "2xx"
    assert attempt["event_type"] == "ProviderRegistered" and attempt["status"] == 200
    # A refused request has its line too, with a trace of its own and no tenant.
    [refused] = [
        line for line in lines if line.get("event") == "request" and line.get("status") == 401
    ]
    assert refused["outcome"] == "unauthenticated" and refused["tenant"] is None
    assert len(refused["trace_id"]) == 32 and refused["trace_id"] != TRACE_ID
