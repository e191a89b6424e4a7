"""Who is acting, for which tenant, under which trace: passed to every governed action."""

from __future__ import annotations

from dataclasses import dataclass

from studio_integrations.core.enums import ActorKind
from studio_integrations.core.trace import current_trace_id


@dataclass(frozen=True, slots=True)
class Actor:
    subject: str
    kind: ActorKind
    name: str | None = None


SYSTEM_ACTOR = Actor(
    subject="studio-integrations", kind=ActorKind.SYSTEM, name="Studio Integrations"
)


@dataclass(frozen=True, slots=True)
class ActionContext:
    tenant_id: str
    actor: Actor
    trace_id: str

    @classmethod
    def system(cls, tenant_id: str, trace_id: str | None = None) -> ActionContext:
        """For actions the service takes on its own (workers, schedulers)."""
        return cls(tenant_id=tenant_id, actor=SYSTEM_ACTOR, trace_id=trace_id or current_trace_id())
