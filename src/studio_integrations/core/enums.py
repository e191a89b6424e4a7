"""Domain enumerations (DESIGN §4 and §5). Imported by persistence and schema; imports nothing."""

from __future__ import annotations

from enum import StrEnum


class AuthMode(StrEnum):
    API_KEY = "API_KEY"
    BEARER_TOKEN = "BEARER_TOKEN"
    BASIC = "BASIC"
    OAUTH2_CLIENT_CREDENTIALS = "OAUTH2_CLIENT_CREDENTIALS"


class ProviderCategory(StrEnum):
    CRM = "CRM"
    HR = "HR"
    PAYMENTS = "PAYMENTS"
    SMS = "SMS"
    MARKETING = "MARKETING"
    ACCOUNTING = "ACCOUNTING"
    COMMUNICATIONS = "COMMUNICATIONS"
    STORAGE = "STORAGE"
    OTHER = "OTHER"


class ProviderStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DEPRECATED = "DEPRECATED"


class ApiClientStatus(StrEnum):
    IMPLEMENTED = "IMPLEMENTED"
    PREVIEW = "PREVIEW"
    DEPRECATED = "DEPRECATED"


class ConnectionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    RETIRED = "RETIRED"


class RunKind(StrEnum):
    TEST = "TEST"
    PROBE = "PROBE"
    VERIFICATION = "VERIFICATION"
    OPERATION = "OPERATION"


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class RotationStrategy(StrEnum):
    GENERATED = "GENERATED"
    EXTERNAL = "EXTERNAL"


class RotationStatus(StrEnum):
    PENDING = "PENDING"
    VERIFYING = "VERIFYING"
    PROMOTED = "PROMOTED"
    FAILED = "FAILED"


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class FailureCategory(StrEnum):
    AUTHENTICATION = "AUTHENTICATION"
    AUTHORIZATION = "AUTHORIZATION"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    NETWORK = "NETWORK"
    SERVER_ERROR = "SERVER_ERROR"
    CLIENT_ERROR = "CLIENT_ERROR"
    CONFIGURATION = "CONFIGURATION"
    SIGNATURE = "SIGNATURE"
    UNKNOWN = "UNKNOWN"


class EscalationStatus(StrEnum):
    OPEN = "OPEN"
    ESCALATED = "ESCALATED"
    RESOLVED = "RESOLVED"


class DeliveryDirection(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    RETRYING = "RETRYING"
    FAILED = "FAILED"


class SignatureStatus(StrEnum):
    VALID = "VALID"
    INVALID = "INVALID"
    MISSING = "MISSING"
    NOT_APPLICABLE = "NOT_APPLICABLE"


class ActorKind(StrEnum):
    USER = "USER"
    SERVICE = "SERVICE"
    SYSTEM = "SYSTEM"
