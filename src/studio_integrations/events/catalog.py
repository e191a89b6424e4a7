"""The event types (DESIGN §6): what each means, the JSON Schema of its ``data`` and an
example. ``webhookEventTypes`` serves this list to integrators, and ``emit_event`` checks
every event it builds against it (``check_data``), so the documented shape and the emitted
one cannot drift apart: outside production a mismatch is an error (the test suite fails),
in production it is logged and the event still goes out.

Schemas name the fields each event always carries; ``additionalProperties`` stays open so a
new field is not a breaking change for integrators (nor for this check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from studio_integrations.events.envelope import EventType

log = logging.getLogger(__name__)

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
LIST: dict[str, Any] = {"type": "array"}
OBJ: dict[str, Any] = {"type": "object"}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": [schema["type"], "null"]}


def _obj(**fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": fields,
        "required": sorted(fields),
        "additionalProperties": True,
    }


_RUN = {
    "runId": STR,
    "kind": STR,
    "status": STR,
    "httpStatus": _null(INT),
    "latencyMs": _null(NUM),
    "errorCategory": _null(STR),
    "externalRef": _null(STR),
}
_CONNECTION = _obj(
    name=STR,
    projectId=STR,
    providerId=STR,
    authMode=STR,
    credentialId=_null(STR),
    status=STR,
    configuration=_null(OBJ),
)
_POLICY = _obj(cadenceDays=_null(INT), expiryWarningDays=_null(INT))
_ROTATION = {
    "rotationId": STR,
    "status": STR,
    "strategy": STR,
    "previousVersion": _null(STR),
    "newVersion": _null(STR),
    "failureReason": _null(STR),
    "verificationRuns": LIST,
}
_SUBSCRIPTION = {
    "eventType": STR,
    "endpointHost": _null(STR),
    "active": BOOL,
    "signingSecretRef": STR,
    "retrySchedule": {"type": ["array", "null"], "items": INT},
    "maxDeliveriesPerSecond": {"type": ["integer", "null"], "minimum": 1},
}


@dataclass(frozen=True, slots=True)
class EventDefinition:
    type: EventType
    description: str
    data_schema: dict[str, Any]
    example: dict[str, Any]


_CONN_EXAMPLE: dict[str, Any] = {
    "name": "Deputy (production)",
    "projectId": "factory-main",
    "providerId": "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
    "authMode": "API_KEY",
    "credentialId": "cred_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
    "status": "ACTIVE",
    "configuration": {"region": "eu"},
    "inboundSigningSecretRef": None,
}
_RUN_EXAMPLE: dict[str, Any] = {
    "runId": "run_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
    "kind": "TEST",
    "status": "SUCCEEDED",
    "httpStatus": 200,
    "latencyMs": 84.2,
    "errorCategory": None,
    "externalRef": None,
    "credentialVersion": "3f1c…",
}
_ROTATION_EXAMPLE: dict[str, Any] = {
    "rotationId": "rot_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
    "status": "PROMOTED",
    "strategy": "GENERATED",
    "previousVersion": "v1",
    "newVersion": "v2",
    "failureReason": None,
    "verificationRuns": [],
}
_SUB_EXAMPLE: dict[str, Any] = {
    "eventType": "CredentialRotated",
    "endpointHost": "hooks.example.com",
    "active": True,
    "signingSecretRef": "local://vault/secrets/whsec-whsub-01jd8",
    "signingSecretVersion": "v1",
    "retrySchedule": None,
    "maxDeliveriesPerSecond": None,
}

DEFINITIONS: tuple[EventDefinition, ...] = (
    EventDefinition(
        EventType.INTEGRATION_CONNECTION_ESTABLISHED,
        "A connection to an external system was set up (with its first test run, if any).",
        _obj(**_CONNECTION["properties"], testRun=_null(OBJ)),
        {**_CONN_EXAMPLE, "testRun": _RUN_EXAMPLE},
    ),
    EventDefinition(
        EventType.INTEGRATION_CONNECTION_UPDATED,
        "A connection's name, configuration or inbound signing secret changed.",
        _obj(changed={"type": "array", "items": STR}, connection=_CONNECTION),
        {"changed": ["name"], "connection": _CONN_EXAMPLE},
    ),
    EventDefinition(
        EventType.INTEGRATION_CONNECTION_TESTED,
        "A connection was tested against its provider (the run's outcome).",
        _obj(**_RUN),
        _RUN_EXAMPLE,
    ),
    EventDefinition(
        EventType.INTEGRATION_CONNECTION_RETIRED,
        "A connection was retired (final).",
        _obj(name=STR, projectId=STR),
        {"name": "Deputy (production)", "projectId": "factory-main"},
    ),
    EventDefinition(
        EventType.CONNECTION_HEALTH_CHANGED,
        "A connection's health status changed (HEALTHY, DEGRADED, UNHEALTHY).",
        _obj(
            connectionId=STR,
            providerId=STR,
            previousStatus=STR,
            status=STR,
            circuitState=STR,
            errorRate=_null(NUM),
        ),
        {
            "connectionId": "conn_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "providerId": "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "previousStatus": "HEALTHY",
            "status": "DEGRADED",
            "circuitState": "CLOSED",
            "connectionStatus": "ACTIVE",
            "latencyMs": 950.0,
            "latencyP50Ms": 120.0,
            "latencyP95Ms": 900.0,
            "errorRate": 0.12,
            "runId": "run_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "runKind": "PROBE",
        },
    ),
    EventDefinition(
        EventType.PROVIDER_REGISTERED,
        "A provider was added to the tenant's catalogue.",
        _obj(key=STR, name=STR, category=STR, capabilities=LIST, authModes=LIST),
        {
            "key": "deputy",
            "name": "Deputy",
            "category": "HR",
            "capabilities": ["rostering"],
            "authModes": ["API_KEY"],
            "authScheme": None,
        },
    ),
    EventDefinition(
        EventType.EXTERNAL_API_CLIENT_REGISTERED,
        "An API client (assembly and SemVer version) was registered for a provider.",
        _obj(providerId=STR, assembly=STR, version=STR, capabilities=LIST, status=STR),
        {
            "providerId": "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "providerKey": "deputy",
            "assembly": "ConnectSoft.Deputy.ApiClient",
            "version": "1.4.0",
            "capabilities": ["rostering"],
            "status": "IMPLEMENTED",
        },
    ),
    EventDefinition(
        EventType.CREDENTIAL_REGISTERED,
        "A credential was registered by its Key Vault reference (never its value).",
        _obj(
            keyVaultRef=STR,
            authMode=STR,
            currentVersion=_null(STR),
            rotationStrategy=STR,
            expiresAt=_null(STR),
            rotationPolicy=_POLICY,
        ),
        {
            "keyVaultRef": "https://studio.vault.azure.net/secrets/deputy-key",
            "name": "deputy-key",
            "authMode": "API_KEY",
            "currentVersion": "v1",
            "rotationStrategy": "GENERATED",
            "expiresAt": "2027-01-01T00:00:00+00:00",
            "rotationPolicy": {"cadenceDays": 90, "expiryWarningDays": 14},
        },
    ),
    EventDefinition(
        EventType.CREDENTIAL_ROTATED,
        "A credential's new version passed verification and was promoted.",
        _obj(**_ROTATION),
        _ROTATION_EXAMPLE,
    ),
    EventDefinition(
        EventType.CREDENTIAL_ROTATION_FAILED,
        "A rotation was rejected (its verification failed); the current version stays.",
        _obj(**_ROTATION),
        {**_ROTATION_EXAMPLE, "status": "FAILED", "failureReason": "verification failed"},
    ),
    EventDefinition(
        EventType.CREDENTIAL_ROTATION_POLICY_CHANGED,
        "A credential's rotation cadence or expiry warning changed.",
        _obj(rotationPolicy=_POLICY),
        {
            "previous": {"cadenceDays": 90, "expiryWarningDays": 14},
            "rotationPolicy": {"cadenceDays": 30, "expiryWarningDays": 7},
        },
    ),
    EventDefinition(
        EventType.CREDENTIAL_EXPIRING,
        "A credential is inside its expiry warning window (EXPIRY_WARNING), or an EXTERNAL "
        "credential is due a new version (ROTATION_DUE).",
        _obj(reason={"enum": ["EXPIRY_WARNING", "ROTATION_DUE"]}, daysLeft=NUM),
        {
            "reason": "EXPIRY_WARNING",
            "currentVersion": "v2",
            "expiresAt": "2027-01-01T00:00:00+00:00",
            "daysLeft": 10,
            "expiryWarningDays": 14,
        },
    ),
    EventDefinition(
        EventType.WEBHOOK_SUBSCRIPTION_CREATED,
        "An outbound webhook subscription was created.",
        _obj(**_SUBSCRIPTION),
        _SUB_EXAMPLE,
    ),
    EventDefinition(
        EventType.WEBHOOK_SUBSCRIPTION_UPDATED,
        "An outbound webhook subscription changed (`changed` lists the fields).",
        _obj(**_SUBSCRIPTION, changed={"type": "array", "items": STR}),
        {**_SUB_EXAMPLE, "changed": ["endpointUrl"]},
    ),
    EventDefinition(
        EventType.WEBHOOK_SUBSCRIPTION_DISABLED,
        "A subscription was disabled by the service (410 Gone, or failing for too long).",
        _obj(reason=STR, endpointHost=_null(STR)),
        {"reason": "the receiver answered 410 Gone", "endpointHost": "hooks.example.com"},
    ),
    EventDefinition(
        EventType.WEBHOOK_SIGNING_SECRET_ROTATED,
        "A subscription's signing secret has a new version; the previous one signs too "
        "until `previousValidUntil`.",
        _obj(
            signingSecretRef=STR,
            newVersion=STR,
            previousVersion=_null(STR),
            previousValidUntil=STR,
        ),
        {
            "signingSecretRef": "local://vault/secrets/whsec-whsub-01jd8",
            "newVersion": "v2",
            "previousVersion": "v1",
            "previousValidUntil": "2026-12-01T12:00:00+00:00",
        },
    ),
    EventDefinition(
        EventType.WEBHOOK_DELIVERY_REPLAYED,
        "Deliveries were queued again with their preserved payloads (same `webhook-id`): one "
        "delivery (`replayWebhookDelivery`: `replayOf`, `messageId`), or every failed one of a "
        "subscription in a time window (`recoverWebhookDeliveries`: `recovered`, `since`, "
        "`until`).",
        {
            "type": "object",
            "properties": {
                "subscriptionId": STR,
                "replayOf": STR,
                "messageId": STR,
                "eventType": STR,
                "recovered": INT,
                "since": STR,
                "until": STR,
            },
            "required": ["subscriptionId"],
            "additionalProperties": True,
        },
        {
            "replayOf": "whdel_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "subscriptionId": "whsub_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "messageId": "evt_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "eventType": "CredentialRotated",
        },
    ),
    EventDefinition(
        EventType.WEBHOOK_TEST_SENT,
        "A signed example of an event type was queued to a subscription's endpoint "
        '(`sendTestWebhook`); its payload has `"test": true`.',
        _obj(subscriptionId=STR, deliveryId=STR, eventType=STR, messageId=STR),
        {
            "subscriptionId": "whsub_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "deliveryId": "whdel_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "eventType": "CredentialRotated",
            "messageId": "evt_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
        },
    ),
    EventDefinition(
        EventType.INBOUND_WEBHOOK_RECEIVED,
        "A provider's webhook to a connection was verified and accepted.",
        _obj(deliveryId=STR, connectionId=STR, messageId=STR),
        {
            "deliveryId": "whdel_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "connectionId": "conn_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "messageId": "msg_2Kp",
            "eventType": "shift.published",
            "payload": {"shiftId": 42},
        },
    ),
    EventDefinition(
        EventType.INTEGRATION_FAILURE_RAISED,
        "A run or a webhook delivery failed. A failure caused by a webhook delivery that "
        "itself carried a failure is not delivered by webhook (no feedback loops).",
        _obj(
            category=STR,
            message=STR,
            connectionId=_null(STR),
            runId=_null(STR),
            deliveryId=_null(STR),
            escalation=STR,
        ),
        {
            "category": "SERVER_ERROR",
            "message": "webhook delivery to hooks.example.com failed after 8 attempt(s)",
            "connectionId": None,
            "runId": None,
            "deliveryId": "whdel_01JD8ZZZZZZZZZZZZZZZZZZZZZ",
            "escalation": "OPEN",
            "escalated": False,
            "groupKey": "SERVER_ERROR:hooks.example.com",
            "occurrences": 1,
            "firstSeenAt": "2026-11-30T12:00:00+00:00",
        },
    ),
)

BY_TYPE: dict[str, EventDefinition] = {d.type.value: d for d in DEFINITIONS}


class EventShapeError(ValueError):
    """An event's data does not match its documented schema (a bug in the emitter)."""


@cache
def _validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(BY_TYPE[event_type].data_schema)


def data_errors(event_type: str, data: dict[str, Any]) -> list[str]:
    """Why ``data`` does not match ``event_type``'s schema (empty when it does)."""
    if event_type not in BY_TYPE:
        return [f"{event_type} is not a documented event type"]
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or 'data'}: {e.message}"
        for e in _validator(event_type).iter_errors(data)
    ]


def check_data(event_type: str, data: dict[str, Any], *, strict: bool) -> None:
    errors = data_errors(event_type, data)
    if not errors:
        return
    if strict:
        raise EventShapeError(f"{event_type} data does not match its schema: {errors}")
    log.warning("%s data does not match its schema: %s", event_type, errors)
