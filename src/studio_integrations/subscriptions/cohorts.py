"""Cohorts: identical live subscriptions executed once per event, one frame for all.

Subscriptions with the same document, variables, operation name, tenant and scope set
receive the same result for every event (field guards decide by scope set, the resolvers by
tenant), so the process runs one Strawberry subscription per such *cohort* (``schema.stream``,
with the first member's context) and encodes each result once, as the tail of a
graphql-transport-ws ``next`` frame. Each member's socket gets ``{"id":<its id>`` spliced
before that shared tail: the operation id is the only per-subscriber part of a frame.

Hooked in at ``run_operation``, the one method of Strawberry's graphql-transport-ws handler
that runs an operation's stream and sends its results: Strawberry has no way to share one
stream between operations, so that method is replaced for cohort operations only; the
protocol (subscribe, complete, caps, errors before execution) stays Strawberry's.

Not cohorted (Strawberry's own per-operation path): anything but a subscription, a document
that does not parse (Strawberry closes the socket with the parser's reason), and a
subscription that resumes from a cursor (``after``: its replay is its own).

Back-pressure is per member: each has a bounded backlog of frames (``queue_size``); a member
whose backlog is full is dropped alone with ``SLOW_CONSUMER`` while the others carry on. A
cohort whose execution itself falls behind the bus is dropped by the hub as one subscriber
(every member gets ``SLOW_CONSUMER``): the server sheds whole cohorts, never a member for
another's backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLFormattedError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    parse,
)
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ErrorMessage
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from studio_integrations.schema.operation_limits import StudioTransportWSHandler
from studio_integrations.subscriptions.hub import COHORT_MEMBERS, SLOW_CONSUMER

if TYPE_CHECKING:
    from studio_integrations.schema.context import StudioContext
    from studio_integrations.subscriptions.hub import FanoutHub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _End:
    """The cohort's stream ended: ``errors`` before execution (an ``error`` message), or
    none (``complete``)."""

    errors: list[GraphQLFormattedError] | None = None


_COMPLETE = _End()


def next_tail(result: ExecutionResult) -> str:
    """Everything of a ``next`` frame after its id, as Strawberry's ``send_next`` builds it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return ',"type":"next","payload":' + json.dumps(payload) + "}"


@dataclass(eq=False)
class CohortMember:
    """One subscription of a cohort: its bounded backlog of frame tails."""

    queue_size: int
    queue: asyncio.Queue[str | _End] = field(init=False)
    dropped: bool = False
    high_water: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size + 1)  # + room for the end

    @property
    def backlog(self) -> int:
        return self.queue.qsize()

    def offer(self, tail: str) -> bool:
        if self.dropped:
            return False
        if self.queue.qsize() >= self.queue_size:
            self.dropped = True
            while not self.queue.empty():  # release the backlog now
                self.queue.get_nowait()
            self.queue.put_nowait(_COMPLETE)
            return False
        self.queue.put_nowait(tail)
        self.high_water = max(self.high_water, self.queue.qsize())
        return True

    def end(self, end: _End) -> None:
        if not self.dropped:
            self.queue.put_nowait(end)  # the extra slot: never full for the end


@dataclass(eq=False)
class Cohort:
    key: Hashable
    hub: FanoutHub
    schema: BaseSchema
    context: StudioContext
    operation: Operation[Any, Any]
    members: set[CohortMember] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="subscription-cohort")

    def size(self) -> int:
        return len(self.members)

    async def _run(self) -> None:
        COHORT_MEMBERS.set(self.size)
        end = _COMPLETE
        try:
            stream = await self.schema.stream(
                self.operation.query,
                variable_values=self.operation.variables,
                context_value=self.context,
                operation_name=self.operation.operation_name,
            )
            first = True
            async with aclosing(stream):
                async for result in stream:
                    if first and isinstance(result, PreExecutionError):
                        end = _End([error.formatted for error in result.errors or ()])
                        return
                    if not isinstance(result, ExecutionResult):
                        message = "Incremental delivery is not supported over graphql-transport-ws"
                        end = _End([GraphQLError(message).formatted])
                        return
                    first = False
                    self._fan_out(next_tail(result))
        except Exception:
            log.exception("subscription cohort failed")
        finally:
            self._finish(end)

    def _fan_out(self, tail: str) -> None:
        for member in list(self.members):
            if not member.offer(tail):
                self.members.discard(member)
                self.hub.dropped += 1
                log.info("hub: dropped a slow subscriber of a cohort")

    def _finish(self, end: _End) -> None:
        if self.hub.cohorts.get(self.key) is self:
            del self.hub.cohorts[self.key]  # a later subscriber starts a new cohort
        for member in self.members:
            member.end(end)


def _root_field(operation: OperationDefinitionNode) -> FieldNode | None:
    fields = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    return fields[0] if len(fields) == 1 else None


def cohort_key(context: Any, operation: Operation[Any, Any]) -> Hashable | None:
    """The key of the cohort this operation belongs to, or None to run it on its own."""
    principal = getattr(context, "principal", None)
    if principal is None:
        return None
    try:
        document = parse(operation.query)
    except GraphQLSyntaxError:
        return None
    definition = get_operation_ast(document, operation.operation_name)
    if definition is None or definition.operation is not OperationType.SUBSCRIPTION:
        return None
    root = _root_field(definition)
    if root is None or any(a.name.value == "after" for a in root.arguments or ()):
        return None
    try:
        variables = json.dumps(operation.variables or {}, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return (
        operation.query,
        variables,
        operation.operation_name,
        principal.tenant_id,
        principal.scopes,
    )


def slow_consumer_tail(field_name: str, queue_size: int) -> str:
    error = {
        "message": f"this subscription fell more than {queue_size} events behind and was "
        "dropped; subscribe again to resume",
        "path": [field_name],
        "extensions": {"code": SLOW_CONSUMER},
    }
    return ',"type":"next","payload":' + json.dumps({"data": None, "errors": [error]}) + "}"


class CohortTransportWSHandler(StudioTransportWSHandler):
    """graphql-transport-ws with the subscription caps, running subscriptions by cohort."""

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        services = getattr(self.context, "services", None)
        hub: FanoutHub | None = getattr(services, "hub", None)
        key = cohort_key(self.context, operation) if hub is not None else None
        if hub is None or key is None:
            await super().run_operation(operation)
            return
        member = CohortMember(hub.queue_size)
        cohort = hub.cohorts.get(key)
        if cohort is None:
            context = replace(self.context, _loaders=None)
            cohort = Cohort(key, hub, self.schema, context, operation)
            hub.cohorts[key] = cohort
            cohort.members.add(member)
            cohort.start()
        else:
            cohort.members.add(member)
        try:
            await self._pump(operation, member)
        finally:
            cohort.members.discard(member)
            if not cohort.members and cohort.task is not None:
                if hub.cohorts.get(key) is cohort:
                    del hub.cohorts[key]
                cohort.task.cancel()

    async def _pump(self, operation: Operation[Any, Any], member: CohortMember) -> None:
        head = '{"id":' + json.dumps(operation.id)
        async for tail in _frames(member):
            if isinstance(tail, _End):
                if member.dropped:
                    root = _root_name(operation)
                    await self._send_text(head + slow_consumer_tail(root, member.queue_size))
                if tail.errors is not None:
                    error: ErrorMessage = {
                        "id": operation.id,
                        "type": "error",
                        "payload": tail.errors,
                    }
                    await operation.send_operation_message(error)
                else:
                    await operation.send_operation_message({"id": operation.id, "type": "complete"})
                return
            if operation.completed:
                return
            await self._send_text(head + tail)

    async def _send_text(self, frame: str) -> None:
        socket = getattr(self.websocket, "ws", None)
        if socket is not None:
            await socket.send_text(frame)
        else:  # another adapter: the same message through its JSON encoder
            await self.send_message(json.loads(frame))


async def _frames(member: CohortMember) -> AsyncIterator[str | _End]:
    while True:
        item = await member.queue.get()
        yield item
        if isinstance(item, _End):
            return


def _root_name(operation: Operation[Any, Any]) -> str:
    with contextlib.suppress(GraphQLSyntaxError):
        definition = get_operation_ast(parse(operation.query), operation.operation_name)
        root = _root_field(definition) if definition is not None else None
        if root is not None:
            return (root.alias or root.name).value
    return "subscription"
