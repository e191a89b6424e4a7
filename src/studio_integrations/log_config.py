"""Structured logs (structlog over the standard library), one JSON object per line when not
on a terminal. Secret values are never passed to a logger anywhere in the project.

Every line carries the current ``trace_id`` and ``span_id`` (``telemetry.tracing``) and the
fields a call passes as ``extra=`` (the request line of ``telemetry.asgi``: method, path,
status, duration, tenant, subject, operation, outcome; the workers' action lines).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

from studio_integrations.core.trace import current_ids
from studio_integrations.outbound.egress import install_log_redaction


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if "trace_id" not in event_dict:
        trace_id, span_id = current_ids()
        if trace_id is not None:
            event_dict["trace_id"] = trace_id
            event_dict["span_id"] = span_id
    return event_dict


def log_formatter(*, json: bool = True) -> logging.Formatter:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
            add_trace_ids,
            structlog.processors.format_exc_info,
        ],
    )


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(log_formatter(json=not target.isatty()))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # httpx logs full URLs at INFO: mask query values (some providers take keys there).
    install_log_redaction()
    # The Azure SDK logs every HTTP request at INFO; keep its warnings and errors only.
    logging.getLogger("azure").setLevel(max(logging.WARNING, root.level))
