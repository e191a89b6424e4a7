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


# --- Outages (HTTP 503 SERVICE_UNAVAILABLE) -----------------------------------------------

UNAVAILABLE_MESSAGE = "The service is temporarily unavailable (database or event bus); retry later."
RETRY_AFTER_SECONDS = 5


def is_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) means the database or the bus cannot be reached:
    a refused or dropped connection, a connection-pool timeout, an operational database
    error. Such a request is answered 503 with ``Retry-After``, not as a bug."""
    import redis.exceptions
    import sqlalchemy.exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(
            exc,
            sqlalchemy.exc.OperationalError
            | sqlalchemy.exc.InterfaceError
            | sqlalchemy.exc.TimeoutError
            | redis.exceptions.ConnectionError
            | redis.exceptions.TimeoutError
            | ConnectionError,
        ):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, OSError) and exc.errno is not None and type(exc) is OSError:
            return True  # "connect call failed" and the like, from the database driver
        exc = exc.__cause__ or exc.__context__
    return False
