"""Identifiers: one id per object, the same in GraphQL, events, webhooks and REST.

Ids are prefixed ULIDs (``conn_01JD8…``): time-sortable (so keyset pagination and the event
log order by id), globally unique, and self-describing, so ``node(id:)`` can tell the type
from the id alone. Clients must treat them as opaque strings.
"""

from __future__ import annotations

import re

from ulid import ULID

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
# How we write them: upper-case Crockford base32 (``ULID.from_str`` also takes lower case and
# other spellings of the same value, which are not our ids).
_ULID_TEXT = re.compile("[0-7][0-9A-HJKMNP-TV-Z]{25}")


def ulid() -> str:
    """A monotonic ULID (python-ulid): ids made in the same millisecond still sort in
    creation order."""
    return str(ULID())


def new_id(type_name: str) -> str:
    return f"{PREFIXES[type_name]}_{ulid()}"


def type_of(id_: str) -> str | None:
    """The entity type an id names, or None when it is not one of ours."""
    prefix, sep, body = id_.partition("_")
    if not sep or not _ULID_TEXT.fullmatch(body):
        return None
    return TYPE_BY_PREFIX.get(prefix)
