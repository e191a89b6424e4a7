"""The project's errors. Each carries the machine-readable code clients branch on.

Domain code raises these; the GraphQL layer turns ``UserInputError`` subclasses into
``userErrors`` and everything else with a ``code`` into a GraphQL error with
``extensions.code``. Anything else is unexpected and is masked (see ``schema.extensions``).
"""

from __future__ import annotations


class StudioError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unauthenticated(StudioError):
    code = "UNAUTHENTICATED"


class Forbidden(StudioError):
    code = "FORBIDDEN"


class NotFound(StudioError):
    code = "NOT_FOUND"


class UserInputError(StudioError):
    """Domain validation: reported as a ``userErrors`` entry, nothing is changed."""

    code = "INVALID"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class UserInputErrors(StudioError):
    """Several validation failures found at once (so the form can mark every field)."""

    code = "INVALID"

    def __init__(self, errors: list[UserInputError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


class UnscopedQueryError(StudioError):
    """A query touched tenant data from a session that is bound to no tenant (a bug)."""


class TenantWriteViolation(StudioError):
    """A write would cross a tenant boundary or modify a global row (a bug or an attack)."""

    code = "FORBIDDEN"
