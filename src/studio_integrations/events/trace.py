"""W3C Trace Context: the trace id of an incoming ``traceparent`` header, else a new one."""

from __future__ import annotations

import re
import secrets

# version "-" trace-id "-" parent-id "-" flags; version ff is invalid, as are all-zero ids.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(header: str | None) -> str | None:
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def new_trace_id() -> str:
    return secrets.token_hex(16)


def trace_id_from(header: str | None) -> str:
    return parse_traceparent(header) or new_trace_id()
