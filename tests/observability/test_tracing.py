"""Traces: one mutation with a ``traceparent`` is one trace, from the HTTP request down to the
webhook delivery its event causes, and the receiver sees that trace in ``traceparent``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from studio_integrations.app import create_app
from studio_integrations.settings import Settings
from studio_integrations.telemetry.tracing import install_tracer_provider
from tests.conftest import TokenFactory
from tests.fakes.receiver import WebhookReceiver
from tests.providers.conftest import REGISTER_PROVIDER, provider_input
from tests.support.graphql import gql
from tests.support.live import LiveServer, serve
from tests.webhooks.conftest import create_subscription, eventually

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"

# These follow a mutation down to its webhook send and probes: the workers run.
pytestmark = pytest.mark.workers("all")


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans if s.context is not None}


def _ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain: list[ReadableSpan] = []
    parent = span.parent
    while parent is not None and parent.span_id in index:
        span = index[parent.span_id]
        chain.append(span)
        parent = span.parent
    return chain


async def test_a_mutation_is_one_trace_down_to_its_webhook_delivery(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    receiver: WebhookReceiver,
    spans: InMemorySpanExporter,
) -> None:
    token = make_token(tenant="acme", scopes="all")
    await create_subscription(http, token, receiver.url, eventType="ProviderRegistered")
    spans.clear()

    body = await gql(
        http,
        REGISTER_PROVIDER.replace("mutation (", "mutation RegisterAcme("),
        {"input": provider_input()},
        token=token,
        headers={"traceparent": TRACEPARENT},
    )
    assert body["data"]["registerProvider"]["userErrors"] == [], body
    [seen] = await receiver.wait_for(1)

    # The receiver got the caller's trace id, under the span of our outbound request.
    version, trace_id, parent_span, flags = seen.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")

    def finished(name: str) -> Any:
        async def probe() -> list[ReadableSpan] | None:
            found = [s for s in spans.get_finished_spans() if s.name == name]
            return found or None

        return probe

    [send] = await eventually(finished("webhook.send"), what="the webhook.send span")
    trace_spans = [
        s
        for s in spans.get_finished_spans()
        if s.context is not None and _hex(s.context.trace_id, 32) == TRACE_ID
    ]
    index = _by_id(trace_spans)

    # The request: a server span whose parent is the caller's span.
    [request] = [s for s in trace_spans if s.kind is SpanKind.SERVER]
    assert request.parent is not None and _hex(request.parent.span_id, 16) == CALLER_SPAN
    # The operation: named by type and name, a child of the request, no variables recorded.
    [operation] = [s for s in trace_spans if s.name == "mutation RegisterAcme"]
    assert request in _ancestors(operation, index)
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.type"] == "mutation"
    assert len(str(operation.attributes["graphql.document.sha256"])) == 64
    assert not any("variable" in key for key in operation.attributes)
    # Database statements under the operation (the insert of the provider among them).
    statements = [s for s in trace_spans if operation in _ancestors(s, index)]
    assert any(s.name.startswith("INSERT") for s in statements), [s.name for s in statements]
    # The delivery's send is in the same trace, and its HTTP client span is what the
    # receiver saw as the parent.
    assert send in trace_spans
    [client] = [
        s
        for s in trace_spans
        if s.kind is SpanKind.CLIENT
        and send in _ancestors(s, index)
        and any(key.startswith("http.") for key in s.attributes or {})
    ]
    assert client.context is not None and _hex(client.context.span_id, 16) == parent_span

    # The audit event carries the same trace id.
    audit = await gql(
        http,
        '{ auditEvents(filter: {types: ["ProviderRegistered"]}) { nodes { traceId } } }',
        token=token,
    )
    assert [n["traceId"] for n in audit["data"]["auditEvents"]["nodes"]] == [TRACE_ID]


async def test_with_tracing_off_the_trace_still_reaches_the_receiver(
    settings: Settings,
    make_token: TokenFactory,
    receiver: WebhookReceiver,
    spans: InMemorySpanExporter,
) -> None:
    install_tracer_provider(None)  # as in production without OTEL_* set
    async with (
        serve(create_app(settings)) as live,
        httpx.AsyncClient(base_url=live.url) as http,
    ):
        token = make_token(tenant="acme", scopes="all")
        await create_subscription(http, token, receiver.url, eventType="ProviderRegistered")
        body = await gql(
            http,
            REGISTER_PROVIDER,
            {"input": provider_input()},
            token=token,
            headers={"traceparent": TRACEPARENT},
        )
        assert body["data"]["registerProvider"]["userErrors"] == []
        [seen] = await receiver.wait_for(1)
    _version, trace_id, parent_span, _flags = seen.headers["traceparent"].split("-")
    assert trace_id == TRACE_ID and parent_span != CALLER_SPAN
    assert spans.get_finished_spans() == ()
