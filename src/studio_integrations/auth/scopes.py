"""Scope names (DESIGN §3) and which scope each governed action needs."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    CONNECTIONS_READ = "connections:read"
    CONNECTIONS_WRITE = "connections:write"
    PROVIDERS_READ = "providers:read"
    PROVIDERS_WRITE = "providers:write"
    CREDENTIALS_READ = "credentials:read"
    CREDENTIALS_WRITE = "credentials:write"
    CREDENTIALS_ROTATE = "credentials:rotate"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    WEBHOOKS_REPLAY = "webhooks:replay"
    HEALTH_READ = "health:read"
    AUDIT_READ = "audit:read"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)

# The governed actions of DESIGN §5 (the mutations), each with the scope it needs. The
# mutation guards and ``viewer.can`` both read this table, so the UI never offers an action
# the API would refuse.
ACTION_SCOPES: dict[str, Scope] = {
    "establishConnection": Scope.CONNECTIONS_WRITE,
    "updateConnection": Scope.CONNECTIONS_WRITE,
    "testConnection": Scope.CONNECTIONS_WRITE,
    "retireConnection": Scope.CONNECTIONS_WRITE,
    "registerProvider": Scope.PROVIDERS_WRITE,
    "registerApiClient": Scope.PROVIDERS_WRITE,
    "registerCredential": Scope.CREDENTIALS_WRITE,
    "rotateCredential": Scope.CREDENTIALS_ROTATE,
    "setRotationPolicy": Scope.CREDENTIALS_WRITE,
    "createWebhookSubscription": Scope.WEBHOOKS_WRITE,
    "updateWebhookSubscription": Scope.WEBHOOKS_WRITE,
    "rotateWebhookSigningSecret": Scope.WEBHOOKS_WRITE,
    "replayWebhookDelivery": Scope.WEBHOOKS_REPLAY,
    "recoverWebhookDeliveries": Scope.WEBHOOKS_REPLAY,
    "sendTestWebhook": Scope.WEBHOOKS_WRITE,
}


def parse_scopes(raw: str) -> frozenset[Scope]:
    """``"all"`` or space/comma separated names; unknown names are an error."""
    if raw.strip() == "all":
        return ALL_SCOPES
    names = [n for n in raw.replace(",", " ").split() if n]
    unknown = sorted(set(names) - {s.value for s in Scope})
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(unknown)}")
    return frozenset(Scope(n) for n in names)
