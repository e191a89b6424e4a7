"""The authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from studio_integrations.auth.scopes import Scope
from studio_integrations.core.context import ActionContext, Actor
from studio_integrations.core.enums import ActorKind


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant_id: str
    scopes: frozenset[Scope]
    name: str | None = None
    expires_at: datetime | None = None
    kind: ActorKind = ActorKind.USER

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes

    @property
    def actor(self) -> Actor:
        return Actor(subject=self.subject, kind=self.kind, name=self.name)

    def action_context(self, trace_id: str) -> ActionContext:
        return ActionContext(tenant_id=self.tenant_id, actor=self.actor, trace_id=trace_id)
