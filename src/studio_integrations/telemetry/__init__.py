"""Observability: OpenTelemetry traces, Prometheus metrics, request and worker log lines.

Like ``errors`` and ``ids``, this package imports nothing of the project, so every layer may
call it. The hooks elsewhere are one line each: ``with span(...)``, a metric call, a log call.
"""
