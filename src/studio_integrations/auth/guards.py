"""Field-level scope guards (DESIGN §3).

``requires(Scope.X)`` goes into a field's ``extensions``. A caller without the scope gets
``null`` for that field and a GraphQL error with ``extensions.code = "FORBIDDEN"``; the rest
of the response still resolves. On a mutation the check runs before the resolver, so a
refused mutation changes nothing. Guarded fields are nullable so the null stays local.
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from studio_integrations.auth.scopes import Scope


class HasScope(BasePermission):
    error_extensions = {"code": "FORBIDDEN"}

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.message = f"Forbidden: this field requires the '{scope.value}' scope."

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = getattr(info.context, "principal", None)
        return principal is not None and principal.has(self.scope)


def requires(scope: Scope) -> list[FieldExtension]:
    return [PermissionExtension(permissions=[HasScope(scope)], use_directives=False)]
