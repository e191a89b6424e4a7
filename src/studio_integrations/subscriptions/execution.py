"""The executor every operation runs with: Strawberry's, with per-event state for subscriptions.

graphql-core 3.3 executes each subscription event on ``copy(executor)`` — a shallow copy, so
the copy shares the subscription's memo of collected sub-fields. Fields are collected anew
for each event, under new keys, so that memo grew by about 1 KB per event for the life of
the subscription. And Strawberry calls ``get_context`` once per WebSocket, so DataLoaders on
the context would cache (stale rows, without bound) for the socket's life. Each event here
gets its own memo and its own context (``StudioContext.for_event``: fresh loaders).
"""

from __future__ import annotations

from typing import Any

from graphql.execution.executor import Executor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class EventScopedExecutor(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        for_event = getattr(self.context_value, "for_event", None)
        if for_event is not None:
            executor.context_value = for_event()
        return executor
