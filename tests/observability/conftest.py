"""Observability fixtures: an in-memory span exporter behind the process's tracer provider.

OpenTelemetry's global tracer provider can be set once per process, so the first test that
asks for ``spans`` installs an SDK provider (with the service's own sampler) for the rest of
the session; the exporter keeps spans only while a test holds the fixture. It is autouse
here so the app under test is built with tracing on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from studio_integrations.telemetry.tracing import studio_sampler, tracing_active
from tests.fakes.receiver import WebhookReceiver


class GatedExporter(InMemorySpanExporter):
    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
        return super().export(spans)


_EXPORTER = GatedExporter()


def _install() -> None:
    if not tracing_active():
        provider = TracerProvider(sampler=studio_sampler())
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    assert tracing_active()


@pytest.fixture(autouse=True)
def spans() -> Iterator[GatedExporter]:
    _install()
    _EXPORTER.clear()
    _EXPORTER.recording = True
    try:
        yield _EXPORTER
    finally:
        _EXPORTER.recording = False
        _EXPORTER.clear()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    fake = WebhookReceiver()
    async with fake.running() as running:
        yield running
