"""How every mutation runs a governed action: one transaction, userErrors on validation.

The domain function receives the tenant-scoped session and the ``ActionContext`` (actor and
trace id for the event it emits). A ``UserInputError`` (or several, as
``UserInputErrors``) rolls the whole transaction back — state and event alike — and comes
back as ``userErrors``; any other error propagates as a GraphQL error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.context import ActionContext
from studio_integrations.core.errors import UserInputError, UserInputErrors
from studio_integrations.schema.context import Info
from studio_integrations.schema.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    value: T | None
    user_errors: list[UserError]


async def run_governed(
    info: Info, action: Callable[[AsyncSession, ActionContext], Awaitable[T]]
) -> Outcome[T]:
    ctx = info.context.action_context()
    try:
        async with info.context.write() as session:
            value = await action(session, ctx)
    except UserInputErrors as exc:
        return Outcome(None, [UserError.from_exception(e) for e in exc.errors])
    except UserInputError as exc:
        return Outcome(None, [UserError.from_exception(exc)])
    return Outcome(value, [])
