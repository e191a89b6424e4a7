"""Cohorts: identical live subscriptions executed once per event, one frame for all.

Subscriptions with the same document, variables, operation name, tenant and scope set
receive the same result for every event (field guards decide by scope set, the resolvers by
tenant), so the process runs one Strawberry subscription per such *cohort* (``schema.stream``,
with the first member's context) and encodes each result once, as the tail of a
graphql-transport-ws ``next`` frame. Each member's socket gets ``{"id":<its id>`` spliced
before that shared tail: the operation id is the only per-subscriber part of a frame.

Hooked in where a subscribe that passed the caps starts (``start_operation``): Strawberry
has no way to share one stream between operations, so a cohort operation gets no task of
its own; it is an ``Operation`` in the handler's ``operations`` (ids, caps and ``complete``
stay the protocol's) and a ``CohortMember`` in its cohort's set. The cohort's task writes
each frame to every member's socket as it fans out, without awaiting: a send that the
socket takes at once (uvicorn's, while its transport is not paused) completes in place, so
per member and event the work is the id splice and one socket write.

Not cohorted (Strawberry's own per-operation path): anything but a subscription, a document
that does not parse (Strawberry closes the socket with the parser's reason), and a
subscription that resumes from a cursor (``after``: its replay is its own).

Back-pressure is per member: only a write that has to wait (the client reads slower than
frames come) gets a task, with a backlog of at most ``queue_size`` frames behind it; a
member whose backlog is full is dropped alone with ``SLOW_CONSUMER`` while the others carry
on. A cohort whose execution itself falls behind the bus is dropped by the hub as one
subscriber (every member gets ``SLOW_CONSUMER``): the server sheds whole cohorts, never a
member for another's backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

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
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
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


class CohortMember:
    """One subscription of a cohort: an entry in its cohort's set, no task of its own.

    The cohort writes each frame to the member's socket as it fans out: a write that the
    socket takes at once (the usual case: the server's send returns without waiting) costs
    no task, no queue and no await. A write that has to wait (the client reads slower than
    frames come) is finished by a task of the member's, and the frames that follow wait in
    a backlog of at most ``queue_size`` (allocated only then); a member whose backlog is
    full is dropped alone (``SLOW_CONSUMER``)."""

    __slots__ = (
        "backlog",
        "cohort",
        "dropped",
        "end",
        "handler",
        "head",
        "high_water",
        "operation",
        "queue_size",
        "release",
        "writer",
    )

    def __init__(
        self,
        handler: CohortTransportWSHandler,
        operation: Operation[Any, Any],
        release: Callable[[], None],
    ) -> None:
        self.handler = handler
        self.operation = operation
        self.release: Callable[[], None] | None = release  # the tenant's subscription slot
        self.head = '{"id":' + json.dumps(operation.id)
        self.cohort: Cohort | None = None
        self.backlog: deque[str] | None = None  # frames behind a write that is waiting
        self.writer: asyncio.Future[None] | None = None  # the task finishing that write
        self.end: list[str] | None = None  # the last frames, once the stream is over
        self.dropped = False
        self.high_water = 0
        self.queue_size = 0

    @property
    def pending(self) -> int:
        """Frames waiting behind a write (the one being written is not counted)."""
        return len(self.backlog) if self.backlog is not None else 0

    def offer(self, tail: str) -> bool:
        """Send (or queue) one event's frame; False when the member is no longer in."""
        if self.dropped or self.end is not None or self.cohort is None:
            return False
        if self.backlog is None:
            self._write(self.head + tail)
            return self.cohort is not None
        if len(self.backlog) >= self.queue_size:
            self._drop()
            return False
        self.backlog.append(self.head + tail)
        self.high_water = max(self.high_water, len(self.backlog))
        return True

    def finish(self, end: _End) -> None:
        """The cohort's stream is over: ``complete`` (or the errors) after what is queued."""
        if self.end is not None:
            return
        operation = self.operation
        if end.errors is not None:
            message: dict[str, Any] = {"id": operation.id, "type": "error", "payload": end.errors}
        else:
            message = {"id": operation.id, "type": "complete"}
        self._last([json.dumps(message)])

    def _drop(self) -> None:
        self.dropped = True
        if self.backlog is not None:
            self.backlog.clear()  # release the backlog now, not when the client reads
        cohort = self._detach()
        if cohort is not None:
            cohort.hub.dropped += 1
        log.info("hub: dropped a slow subscriber of a cohort")
        root = _root_name(self.operation)
        tail = slow_consumer_tail(root, self.queue_size)
        complete = json.dumps({"id": self.operation.id, "type": "complete"})
        self._last([self.head + tail, complete])

    def _last(self, frames: list[str]) -> None:
        """The operation's last frames: it leaves its socket's operations (the id is free
        again) and the tenant's slot is released; the frames follow what is queued."""
        self.end = frames
        self.operation.completed = True
        self.handler.operations.pop(self.operation.id, None)
        self.handler.forget_member(self.operation.id)
        self._release()
        self._detach()
        for frame in frames:
            if self.backlog is None:
                self._write(frame)
            else:
                self.backlog.append(frame)

    def _release(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()

    def _write(self, frame: str) -> None:
        """Write now if the socket takes it at once, else finish the write in a task."""
        send = self.handler.send_frame(frame)
        try:
            waiting = send.send(None)
        except StopIteration:
            return
        except Exception:  # the socket is gone: its handler ends the operation
            self.leave()
            return
        self.backlog = deque()
        self.writer = asyncio.ensure_future(self._drain(send, waiting))

    async def _drain(self, send: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _finish_started(send, waiting)
            while self.backlog:
                await self.handler.send_frame(self.backlog.popleft())
            self.backlog = None
        except Exception:  # the socket is gone
            self.leave()
        finally:
            self.writer = None

    def leave(self) -> None:
        """Gone: the client completed the operation or left (or its socket failed); what
        was queued for it is released. The cohort ends with its last member."""
        self._release()
        self.backlog = None
        writer, self.writer = self.writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        self._detach()

    def _detach(self) -> Cohort | None:
        cohort, self.cohort = self.cohort, None
        if cohort is not None:
            cohort.remove(self)
        return cohort


@types.coroutine
def _finish_started(coroutine: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """Finish, in the task that awaits this, a coroutine whose first step already ran and
    is waiting on ``waiting`` (what it yielded): values and exceptions are passed through,
    as ``await`` does."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            value = yield waiting
            error = None
        except BaseException as exc:
            error = exc
        try:
            waiting = coroutine.throw(error) if error is not None else coroutine.send(value)
        except StopIteration as stop:
            return stop.value


@dataclass(eq=False)
class Cohort:
    key: Hashable
    hub: FanoutHub
    schema: BaseSchema
    context: StudioContext
    operation: Operation[Any, Any]
    members: set[CohortMember] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    ending: bool = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="subscription-cohort")

    def size(self) -> int:
        return len(self.members)

    def add(self, member: CohortMember) -> None:
        member.cohort = self
        member.queue_size = self.hub.queue_size
        self.members.add(member)

    def remove(self, member: CohortMember) -> None:
        self.members.discard(member)
        if not self.members and not self.ending:
            self._forget()
            if self.task is not None:
                self.task.cancel()

    def _forget(self) -> None:
        if self.hub.cohorts.get(self.key) is self:
            del self.hub.cohorts[self.key]  # a later subscriber starts a new cohort

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
        """The frame's tail goes to every member: each write happens here, at once, for a
        socket that takes it (``CohortMember.offer``)."""
        members = self.members
        for member in list(members):
            if not member.offer(tail):
                members.discard(member)

    def _finish(self, end: _End) -> None:
        self.ending = True
        self._forget()
        for member in list(self.members):
            member.finish(end)


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
    """graphql-transport-ws with the subscription caps, running subscriptions by cohort.

    A cohort subscription is an ``Operation`` in ``operations`` (the protocol's ids, caps
    and ``complete`` work as for any other) and a ``CohortMember`` of its cohort: no task."""

    _members: dict[str, CohortMember] | None = None  # by operation id, made on first use

    def on_request_accepted(self) -> None:
        super().on_request_accepted()
        # Strawberry keeps the init timer's task after cancelling it (its frames and its
        # CancelledError with them) for the life of the socket.
        timer = self.connection_init_timeout_task
        if timer is not None:
            timer.add_done_callback(self._forget_init_timer)

    def _forget_init_timer(self, task: asyncio.Task[Any]) -> None:
        if self.connection_init_timeout_task is task:
            self.connection_init_timeout_task = None

    async def start_operation(self, message: SubscribeMessage, release: Callable[[], None]) -> None:
        services = getattr(self.context, "services", None)
        hub: FanoutHub | None = getattr(services, "hub", None)
        payload = message["payload"]
        query = payload.get("query") if isinstance(payload, dict) else None
        if hub is None or not isinstance(query, str):
            # No hub, or not a document (a hostile or broken frame): Strawberry's own path
            # answers it with its error.
            await super().start_operation(message, release)
            return
        operation: Operation[Any, Any] = Operation(
            self,
            message["id"],
            query,
            payload.get("variables"),
            payload.get("operationName"),
        )
        key = cohort_key(self.context, operation)
        if key is None:
            await super().start_operation(message, release)
            return
        member = CohortMember(self, operation, release)
        self.operations[operation.id] = operation
        if self._members is None:
            self._members = {}
        self._members[operation.id] = member
        cohort = hub.cohorts.get(key)
        if cohort is None:
            context = replace(self.context, _loaders=None)
            cohort = Cohort(key, hub, self.schema, context, operation)
            hub.cohorts[key] = cohort
            cohort.add(member)
            cohort.start()
        else:
            operation.query = cohort.operation.query  # one copy of the document
            cohort.add(member)

    async def cleanup_operation(self, operation_id: str) -> None:
        member = self._members.pop(operation_id, None) if self._members else None
        if member is None:
            await super().cleanup_operation(operation_id)
            return
        self.operations.pop(operation_id, None)
        member.leave()

    def forget_member(self, operation_id: str) -> None:
        if self._members:
            self._members.pop(operation_id, None)

    def send_frame(self, frame: str) -> Coroutine[Any, Any, None]:
        """Sending one frame (already encoded text) on this socket."""
        socket = getattr(self.websocket, "ws", None)
        if socket is not None:
            return cast("Coroutine[Any, Any, None]", socket.send_text(frame))
        return self.send_message(json.loads(frame))  # another adapter: its JSON encoder


def _root_name(operation: Operation[Any, Any]) -> str:
    with contextlib.suppress(GraphQLSyntaxError):
        definition = get_operation_ast(parse(operation.query), operation.operation_name)
        root = _root_field(definition) if definition is not None else None
        if root is not None:
            return (root.alias or root.name).value
    return "subscription"
