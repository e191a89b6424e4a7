"""Structured logs (structlog over the standard library), one JSON object per line when not
on a terminal. Secret values are never passed to a logger anywhere in the project."""

from __future__ import annotations

import logging
import sys

import structlog

from studio_integrations.domain.egress import install_log_redaction


def configure_logging(level: str = "INFO") -> None:
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # httpx logs full URLs at INFO: mask query values (some providers take keys there).
    install_log_redaction()
    # The Azure SDK logs every HTTP request at INFO; keep its warnings and errors only.
    logging.getLogger("azure").setLevel(max(logging.WARNING, root.level))
