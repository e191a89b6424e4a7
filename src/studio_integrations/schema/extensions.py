"""Schema extensions: document limits, caches, and error shaping.

Extensions are given as factories so no state is shared between concurrent operations
(instances are deprecated in Strawberry). The caches keep module-level LRUs, so a fresh
extension per operation still hits them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from studio_integrations.core.errors import UNAVAILABLE_MESSAGE, StudioError, is_outage
from studio_integrations.schema.observability import OperationTelemetry
from studio_integrations.schema.operation_limits import OperationLimits

log = logging.getLogger("studio_integrations.core.errors")

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 15_000
CACHE_SIZE = 512
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class ShapeErrors(MaskErrors):
    """Every error leaves with an ``extensions.code``; unexpected ones leave masked.

    - errors the project raises (``StudioError``) keep their message and code;
    - GraphQL errors (syntax, validation, limits, permission guards) keep their message;
    - anything else becomes "Unexpected error." with the operation's trace id, and the
      original, with its traceback, goes to the log under that trace id.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=self._is_unexpected)

    @staticmethod
    def _is_unexpected(error: GraphQLError) -> bool:
        original = error.original_error
        return original is not None and not isinstance(
            original, StudioError | GraphQLError | MissingQueryError
        )

    def _trace_id(self) -> str | None:
        context = getattr(self.execution_context, "context", None)
        return getattr(context, "trace_id", None)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        trace_id = self._trace_id()
        if is_outage(error.original_error):
            log.warning(
                "database or bus unavailable (trace %s): %r", trace_id, error.original_error
            )
            masked = super().anonymise_error(error)
            masked.message = UNAVAILABLE_MESSAGE
            masked.extensions = {"code": SERVICE_UNAVAILABLE, "traceId": trace_id}
            return masked
        log.error(
            "unexpected error in %s (trace %s)",
            ".".join(str(p) for p in error.path or []) or "operation",
            trace_id,
            exc_info=error.original_error,
        )
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR", "traceId": trace_id}
        return masked

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        shaped = [_with_code(e) for e in super()._process_errors(errors)]
        if not self._introspection_enabled():
            # "Did you mean 'credentials'?" would answer what introspection refuses to.
            shaped = [_without_hint(e) for e in shaped]
        return shaped

    def _introspection_enabled(self) -> bool:
        context = getattr(self.execution_context, "context", None)
        services = getattr(context, "services", None)
        return services is None or bool(services.settings.introspection_enabled)

    def on_operation(self) -> Iterator[None]:
        # Parse failures (syntax, token limit) never reach ``result``: Strawberry throws
        # them through the operation hooks. They are the client's: code them and let go.
        try:
            yield from super().on_operation()
        except GraphQLError as error:
            _with_code(error)
            raise


# graphql-core's suggestions of schema names: fields, arguments, types, enum values.
_SCHEMA_HINT = re.compile(r"\s*Did you mean [^?]*\?")


def _without_hint(error: GraphQLError) -> GraphQLError:
    """A copy without graphql-core's suggestions: validation errors are cached with their
    document and shared by every request (and app) that sends it, so never edit them."""
    message = _SCHEMA_HINT.sub("", error.message)
    if message == error.message:
        return error
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=error.extensions,
    )


def _with_code(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    extensions: dict[str, Any] = dict(error.extensions or {})
    if isinstance(original, MissingQueryError):
        # An empty document (a WebSocket subscribe with `"query": ""`): the client's error,
        # answered as HTTP answers it (400 BAD_REQUEST), not as a masked unexpected one.
        error.message = "the request has no GraphQL document (`query` is empty)"
        extensions["code"] = "BAD_REQUEST"
    elif isinstance(original, StudioError):
        extensions["code"] = original.code
        field = getattr(original, "field", None)
        if field:
            extensions["field"] = field
    elif "code" not in extensions:
        if error.path is None:
            syntax = error.message.startswith("Syntax Error") or "tokens" in error.message
            extensions["code"] = "GRAPHQL_PARSE_FAILED" if syntax else "GRAPHQL_VALIDATION_FAILED"
        else:
            extensions["code"] = "BAD_REQUEST"
    error.extensions = extensions
    return error


# The depth and alias limits' validation rules, made once. Strawberry's limiters build a new
# rule class per instance, and the validation cache's key holds the rule classes: with a
# limiter per operation, every operation missed the cache and was validated again.
_LIMIT_RULES = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)


def schema_extensions() -> list[Callable[[], SchemaExtension]]:
    return [
        OperationTelemetry,  # first: its span holds parsing, validation and execution
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        lambda: AddValidationRules(list(_LIMIT_RULES)),
        # Cost estimate, rate limits, introspection and HTTP-subscription refusals; runs
        # after validation, before execution (settings from the context's services).
        OperationLimits,
        ShapeErrors,
    ]
