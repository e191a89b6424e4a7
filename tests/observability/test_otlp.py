"""Export is off unless the standard OTEL_* variables turn it on; then spans leave over OTLP
(HTTP/protobuf), here to a loopback collector."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from studio_integrations.telemetry.tracing import (
    configure_tracing,
    install_tracer_provider,
    installed_provider,
    span,
    tracing_active,
)
from tests.fakes.receiver import WebhookReceiver


@pytest.fixture(autouse=True)
def tracing_off() -> None:
    install_tracer_provider(None)  # this file configures its own


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_SERVICE_NAME": "studio"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_off_unless_asked(environ: dict[str, str]) -> None:
    assert configure_tracing(environ) is False
    assert not tracing_active()


async def test_spans_leave_over_otlp(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "studio-under-test")
    try:
        assert configure_tracing() is True
        with span("webhook.send", {"studio.event_type": "ProviderRegistered"}):
            pass
        provider = installed_provider()
        assert provider is not None
        assert provider.force_flush()  # type: ignore[attr-defined]
        [seen] = await receiver.wait_for(1)
    finally:
        provider = installed_provider()
        install_tracer_provider(None)
        if provider is not None:
            provider.shutdown()  # type: ignore[attr-defined]
    assert seen.path == "/v1/traces"
    assert seen.headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(seen.body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "studio-under-test"
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["webhook.send"]
