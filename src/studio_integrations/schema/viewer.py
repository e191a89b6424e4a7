"""The caller, and which governed actions the Studio should offer them."""

from __future__ import annotations

import strawberry

from studio_integrations.auth.principal import Principal
from studio_integrations.auth.scopes import ACTION_SCOPES


@strawberry.type(description="One flag per governed action: may the viewer perform it?")
class ViewerCan:
    establish_connection: bool
    update_connection: bool
    test_connection: bool
    retire_connection: bool
    register_provider: bool
    register_api_client: bool
    register_credential: bool
    rotate_credential: bool
    set_rotation_policy: bool
    create_webhook_subscription: bool
    update_webhook_subscription: bool
    rotate_webhook_signing_secret: bool
    replay_webhook_delivery: bool
    recover_webhook_deliveries: bool
    send_test_webhook: bool

    @classmethod
    def for_principal(cls, principal: Principal) -> ViewerCan:
        flags = {_snake(action): principal.has(scope) for action, scope in ACTION_SCOPES.items()}
        return cls(**flags)


@strawberry.type(description="The authenticated caller.")
class Viewer:
    subject: str
    tenant_id: str
    name: str | None
    scopes: list[str]
    can: ViewerCan

    @classmethod
    def for_principal(cls, principal: Principal) -> Viewer:
        return cls(
            subject=principal.subject,
            tenant_id=principal.tenant_id,
            name=principal.name,
            scopes=sorted(s.value for s in principal.scopes),
            can=ViewerCan.for_principal(principal),
        )


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
