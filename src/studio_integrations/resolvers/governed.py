"""The one way a mutation runs its governed action, and the one place ``userErrors`` are made.

The domain action receives the ``ActionContext`` (actor and trace id for the audit event it
emits) and either the tenant-scoped session of one transaction (``run_governed``) or, for an
action that waits on the outside world (a provider call, the vault), the tenant's
``TenantSessions`` so that no transaction is held over the wait (``run_governed_calls``).
A ``UserInputError`` (or several, as ``UserInputErrors``) rolls its transaction back, state
and event alike, and comes back as ``userErrors``; any other error propagates as a GraphQL
error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.context import ActionContext
from studio_integrations.core.errors import UserInputError, UserInputErrors
from studio_integrations.persistence.db import TenantSessions
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    value: T | None
    user_errors: list[UserError] = field(default_factory=list)

    def map(self, convert: Callable[[T], R]) -> R | None:
        """The value as a schema type, or None when the action changed nothing."""
        return convert(self.value) if self.value is not None else None

    def also(self, error: UserInputError | None) -> Outcome[T]:
        """With a validation failure the action reported in its result (a failed live test
        returns the run it recorded, and says why nothing was established)."""
        return self if error is None else Outcome(self.value, [*self.user_errors, *_mapped(error)])


def _mapped(exc: UserInputError | UserInputErrors) -> list[UserError]:
    errors = exc.errors if isinstance(exc, UserInputErrors) else [exc]
    return [UserError(field=e.field, code=e.code, message=e.message) for e in errors]


async def _run(info: Info, step: Callable[[ActionContext], Awaitable[T]]) -> Outcome[T]:
    try:
        return Outcome(await step(info.context.action_context()))
    except (UserInputError, UserInputErrors) as exc:
        return Outcome(None, _mapped(exc))


async def run_governed(
    info: Info, action: Callable[[AsyncSession, ActionContext], Awaitable[T]]
) -> Outcome[T]:
    """Run ``action`` in one transaction of the caller's tenant."""

    async def in_transaction(ctx: ActionContext) -> T:
        async with info.context.write() as session:
            return await action(session, ctx)

    return await _run(info, in_transaction)


async def run_governed_calls(
    info: Info, action: Callable[[TenantSessions, ActionContext], Awaitable[T]]
) -> Outcome[T]:
    """Run ``action`` with the caller's tenant sessions: it reads, calls out, then writes in
    a short transaction of its own."""
    sessions = TenantSessions(info.context.services.db, info.context.scope)
    return await _run(info, lambda ctx: action(sessions, ctx))
