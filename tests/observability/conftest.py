"""Observability fixtures: tracing on with an in-memory span exporter (the service's own
sampler), installed for each test and removed after it; autouse, so the app under test is
built with tracing on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from studio_integrations.telemetry.tracing import install_tracer_provider, studio_sampler
from tests.fakes.provider import FakeProvider
from tests.fakes.receiver import WebhookReceiver


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded while the test runs (apps built in it are instrumented)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=studio_sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install_tracer_provider(provider)
    try:
        yield exporter
    finally:
        install_tracer_provider(None)
        provider.shutdown()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    fake = WebhookReceiver()
    async with fake.running() as running:
        yield running


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    async with provider.running() as running:
        yield running
