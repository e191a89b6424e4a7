"""Identifiers: one id per object, the same in GraphQL, events, webhooks and REST.

Ids are prefixed ULIDs (``conn_01JD8…``): time-sortable (so keyset pagination and the event
log order by id), globally unique, and self-describing, so ``node(id:)`` can tell the type
from the id alone. Clients must treat them as opaque strings.
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}

# Prefix per entity. The prefix is part of the public id: never change one.
PREFIXES: dict[str, str] = {
    "Provider": "prov",
    "ExternalApiClient": "apic",
    "IntegrationConnection": "conn",
    "IntegrationRun": "run",
    "RunAttempt": "att",
    "Credential": "cred",
    "CredentialRotation": "rot",
    "WebhookSubscription": "whsub",
    "WebhookDelivery": "whdel",
    "WebhookDeliveryAttempt": "whatt",
    "HealthSnapshot": "hsnap",
    "IntegrationFailure": "fail",
    "AuditEvent": "evt",
    "OutboxMessage": "obx",
    "Secret": "sec",
}
TYPE_BY_PREFIX: dict[str, str] = {prefix: name for name, prefix in PREFIXES.items()}

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def ulid() -> str:
    """A monotonic ULID: ids made in the same millisecond still sort in creation order."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand += 1
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to count up
        _last_ms = ms
        value = (ms << 80) | (_last_rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))


def new_id(type_name: str) -> str:
    return f"{PREFIXES[type_name]}_{ulid()}"


def type_of(id_: str) -> str | None:
    """The entity type an id names, or None when it is not one of ours."""
    prefix, sep, body = id_.partition("_")
    if not sep or len(body) != 26 or any(c not in _DECODE for c in body):
        return None
    return TYPE_BY_PREFIX.get(prefix)
