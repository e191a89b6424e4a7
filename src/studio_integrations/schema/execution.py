"""Query execution without graphql-core's per-field machinery, where that changes nothing.

Two shortcuts, both falling back to graphql-core for anything off the happy path:

**Operation plans.** A query is compiled once per parsed document (the parser cache hands
back the same document for the same text; plans are cached by its identity, beside the
validation cache) into a plan: for each selected field, either the attribute a plain
Strawberry field reads, or the field's own resolver (Strawberry's wrapper, so its guards and
argument conversion run unchanged), and how its value completes — leaf coercion, list,
object with its sub-plan. Executing the plan walks the whole tree without graphql-core's
per-field resolve-info, completion walk and per-field coroutines: every resolver reachable
without waiting is called, then the awaitables of that wave (the DataLoader-backed fields of
every object of a level) are gathered at once, and their values complete into the next wave.
A wave's loads all land in one DataLoader batch, so the statement count stays that of
graphql-core's execution (flat in page size).

The plan only ever produces an answer without errors. The first sign of anything else — a
resolver raising (a guard refusing included), a null for a non-null field, a value a scalar
refuses, an awaitable where a value was expected, an object ``is_type_of`` rejects — abandons
it, and graphql-core executes the whole operation from the start (queries only: resolvers of
reads have no side effects, and the request's DataLoaders already hold what was loaded, so no
statement runs twice). Errors, their messages, paths, codes and order, and null propagation
are therefore graphql-core's by construction. A caller without the scope of a guarded field
in the document skips the plan (it would be abandoned), as do documents the plan cannot
express: mutations and subscriptions, directives (``@skip``/``@include`` make the selection
depend on variables), abstract types (``node``), introspection, and schemas whose extensions
wrap resolvers (field middleware).

**Plain leaves.** Inside graphql-core's execution (the fallback, mutations, subscription
events), a field whose Strawberry definition is *basic* (no resolver, no extension, so no
guard) and whose type is a scalar or enum is read and coerced directly — the attribute
Strawberry's basic-field resolver reads (``getattr``), the same ``coerce_output_value`` —
and anything off the happy path is handed back to graphql-core's ``execute_field``, which
reads the attribute again and produces its exact error, path and null propagation.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from types import CoroutineType
from typing import Any, cast

from graphql import (
    BREAK,
    FieldNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Visitor,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    visit,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    GroupedFieldSet,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path, Undefined
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_arguments
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.field import StrawberryField

from studio_integrations.auth.guards import HasScope
from studio_integrations.auth.scopes import Scope
from studio_integrations.resolvers.loaders import LOADED_ATTRIBUTE, LoadedField
from studio_integrations.schema.extensions import CACHE_SIZE

# (attribute name, non-null, leaf type)
LeafPlan = tuple[str, bool, GraphQLLeafType]
DEFINITION = "strawberry-definition"  # where Strawberry keeps a field's definition
DEFINITION_ATTRIBUTE = "__strawberry_definition__"  # where it keeps a type's

# id(parent type), field name -> (parent type, plan or None). The type is kept so the id
# stays its own; schemas are built once per process.
_PLANS: dict[tuple[int, str], tuple[GraphQLObjectType, LeafPlan | None]] = {}


def _basic_attribute(field_def: GraphQLField) -> str | None:
    """The attribute a plain Strawberry field reads (no resolver, no extension), else None."""
    definition = (field_def.extensions or {}).get(DEFINITION)
    if (
        getattr(field_def.resolve, "_is_default", False)
        and isinstance(definition, StrawberryField)
        and definition.is_basic_field
        and definition.default_resolver is getattr
    ):
        return definition.python_name
    return None


def _plan(parent_type: GraphQLObjectType, field_name: str) -> LeafPlan | None:
    plan: LeafPlan | None = None
    field_def = parent_type.fields.get(field_name)
    if field_def is not None:
        attribute = _basic_attribute(field_def)
        leaf = get_nullable_type(field_def.type)
        if attribute is not None and is_leaf_type(leaf):
            plan = (attribute, is_non_null_type(field_def.type), leaf)
    _PLANS[(id(parent_type), field_name)] = (parent_type, plan)
    return plan


# --- Operation plans ---------------------------------------------------------------------


class Unplannable(Exception):
    """The document uses something the plan does not express: graphql-core executes it."""


class Abandon(Exception):
    """Execution left the happy path: graphql-core executes the operation instead."""


@dataclass(slots=True)
class Completion:
    """How a value of one output type completes: exactly one of leaf, item, object_type."""

    non_null: bool
    leaf: GraphQLLeafType | None = None
    item: Completion | None = None
    object_type: GraphQLObjectType | None = None
    steps: list[Step] = field(default_factory=list)
    coerce: Callable[[Any], Any] | None = None  # the leaf's coerce_output_value
    # object_type with Strawberry's own ``is_type_of``: the classes it accepted (``typed``)
    accepted: set[type] | None = None


# What a step does with its object.
READ_LEAF = 0  # a plain field of scalar or enum type: read the attribute, coerce
READ = 1  # a plain field of object or list type: read the attribute, complete
RESOLVE = 2  # call the field's resolver (Strawberry's, with its extensions), complete
TYPENAME = 3  # ``__typename``


@dataclass(slots=True)
class Step:
    """One response key of an object's selection."""

    key: str
    parent_type: GraphQLObjectType
    field_def: GraphQLField
    details: FieldDetailsList
    nodes: list[FieldNode]
    action: int
    attribute: str  # READ_LEAF and READ: the attribute Strawberry's basic resolver reads
    has_arguments: bool
    completion: Completion
    # The first four entries of the field's resolve info (name, nodes, type, parent type)
    info_prefix: tuple[Any, ...] = ()
    # RESOLVE without field extensions other than scope guards: the Strawberry field whose
    # resolver is called the way Strawberry's wrapper calls it (``Direct``); None: call the
    # wrapper.
    direct: Direct | None = None
    # A direct field declared with ``loaded_field`` and no arguments: its ``LoadedField``,
    # which resolves every object of a wave in one call (``resolve_many``).
    loaded: LoadedField[Any, Any, Any, Any] | None = None


class Direct:
    """What Strawberry's resolver wrapper does for a field with a resolver
    (``GraphQLCoreConverter.from_resolver``: its Info, ``get_arguments``,
    ``StrawberryField.get_result``), done here without the wrapper's layers (its coroutine,
    ``await_maybe``'s, the extension chain), which cost more than most resolvers.

    Where the resolver's parameters go (``self``, ``root``/``parent``, ``info``) is read once
    from Strawberry's resolver, not per call. Arguments are converted the way
    ``get_arguments`` converts them (``convert_arguments``, then each extension's
    ``map_arguments``); a field without arguments has nothing to convert. The only field
    extensions allowed are scope guards (``requires``: a ``PermissionExtension`` of
    ``HasScope`` checks alone, whose ``map_arguments`` leaves the arguments as they are):
    ``HasScope`` asks nothing but whether the request's principal holds the scope, and a
    plan runs only for a principal that holds every guarded scope of its document
    (``OperationPlan.scopes``), so each guard would let its field through; on that
    condition the guard's answer is the plan's, taken once per request instead of once per
    object."""

    __slots__ = (
        "arguments",
        "config",
        "extensions",
        "field",
        "function",
        "info_class",
        "info_name",
        "parent_names",
        "pass_self",
        "scalar_registry",
    )

    def __init__(
        self,
        field: StrawberryField,
        info_class: type[Any],
        config: StrawberryConfig,
        scalar_registry: Any,
    ) -> None:
        resolver = field.base_resolver
        assert resolver is not None
        self.field = field
        self.info_class = info_class
        self.config = config
        self.scalar_registry = scalar_registry
        self.function = cast(Callable[..., Any], resolver.wrapped_func)  # callable: _direct
        self.arguments = field.arguments
        self.extensions = field.extensions
        self.pass_self = resolver.self_parameter is not None
        self.parent_names = tuple(
            parameter.name
            for parameter in (resolver.parent_parameter, resolver.root_parameter)
            if parameter is not None
        )
        info_parameter = resolver.info_parameter
        self.info_name = info_parameter.name if info_parameter is not None else None

    def convert(self, info: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        """The resolver's keyword arguments from the field's coerced arguments, as
        ``get_arguments`` converts them (a new dict each time)."""
        if not self.arguments:
            kwargs: dict[str, Any] = {}
        else:
            kwargs = convert_arguments(
                arguments,
                self.arguments,
                scalar_registry=self.scalar_registry,
                config=self.config,
                info=info,
            )
        for extension in self.extensions:
            kwargs = extension.map_arguments(kwargs)
        return kwargs

    def __call__(
        self,
        source: Any,
        info: Any,
        arguments: dict[str, Any],
        converted: dict[int, dict[str, Any]],
    ) -> Any:
        """``converted``: the operation's converted arguments by field, where they are all
        immutable values (the same for every object, so converted once per operation)."""
        strawberry_info = self.info_class(_raw_info=info, _field=self.field)
        known = converted.get(id(self))
        if known is not None:
            kwargs = dict(known)
        else:
            kwargs = self.convert(strawberry_info, arguments)
            if all(_immutable(value) for value in kwargs.values()):
                converted[id(self)] = dict(kwargs)
        for name in self.parent_names:
            kwargs[name] = source
        if self.info_name is not None:
            kwargs[self.info_name] = strawberry_info
        if self.pass_self:
            return self.function(source, **kwargs)
        return self.function(**kwargs)


@dataclass(slots=True)
class OperationPlan:
    steps: list[Step]
    scopes: frozenset[Scope]  # every guard's scope: a caller without one skips the plan


def _coercer(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    """The leaf's ``coerce_output_value``; for an enum, remembered per member (Strawberry
    looks each member up among the enum's values)."""
    coerce = leaf.coerce_output_value
    members = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or not isinstance(members, type):
        return coerce
    names: dict[Any, Any] = {}

    def coerce_member(value: Any) -> Any:
        if type(value) is not members:  # a raw value, or a str equal to a StrEnum member
            return coerce(value)
        name = names.get(value)
        if name is None:
            name = names[value] = coerce(value)
        return name

    return coerce_member


class _Directives(Visitor):
    found = False

    def enter_directive(self, *_args: Any) -> Any:
        self.found = True
        return BREAK


class _Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDetails],
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = fragments
        # Without directives the selection does not depend on the variables.
        self.no_variables = VariableValues({}, {})
        self.scopes: set[Scope] = set()

    def compile(self) -> OperationPlan:
        if self.operation.operation is not OperationType.QUERY:
            raise Unplannable("not a query")
        for node in (self.operation, *(f.definition for f in self.fragments.values())):
            visitor = _Directives()
            visit(node, visitor)
            if visitor.found:
                raise Unplannable("directives")
        for fragment in self.fragments.values():
            if fragment.definition.variable_definitions or fragment.variable_signatures:
                raise Unplannable("fragment variables")
        root_type = self.schema.query_type
        if root_type is None:
            raise Unplannable("no query type")
        grouped, defer_usages, forbidden = collect_fields(
            self.schema, self.fragments, self.no_variables, root_type, self.operation
        )
        if defer_usages or forbidden:
            raise Unplannable("incremental delivery")
        return OperationPlan(self.steps(root_type, grouped), frozenset(self.scopes))

    def steps(self, parent_type: GraphQLObjectType, grouped: GroupedFieldSet) -> list[Step]:
        steps = []
        for key, details in grouped.items():
            node = details[0].node
            name = node.name.value
            field_def = self.schema.get_field(parent_type, name)
            if field_def is None or field_def.resolve is None or name in ("__schema", "__type"):
                raise Unplannable("introspection, or a field without a resolver")
            self._guards(field_def)
            completion = self.completion(field_def.type, details)
            attribute = _basic_attribute(field_def)
            if name == "__typename":
                action = TYPENAME
            elif attribute is None:
                action = RESOLVE
            else:
                action = READ_LEAF if completion.leaf is not None else READ
            nodes = [d.node for d in details]
            has_arguments = bool(field_def.args or node.arguments)
            direct = self._direct(field_def) if action == RESOLVE else None
            loaded = (
                getattr(direct.function, LOADED_ATTRIBUTE, None)
                if direct is not None and not has_arguments
                else None
            )
            steps.append(
                Step(
                    key=key,
                    parent_type=parent_type,
                    field_def=field_def,
                    details=details,
                    nodes=nodes,
                    action=action,
                    attribute=attribute or "",
                    has_arguments=has_arguments,
                    completion=completion,
                    direct=direct,
                    loaded=loaded if isinstance(loaded, LoadedField) else None,
                    info_prefix=(name, nodes, field_def.type, parent_type),
                )
            )
        return steps

    def _direct(self, field_def: GraphQLField) -> Direct | None:
        definition = (field_def.extensions or {}).get(DEFINITION)
        strawberry_schema = getattr(self.schema, "_strawberry_schema", None)
        converter = getattr(strawberry_schema, "schema_converter", None)
        handlers = getattr(converter, "_get_field_exception_handlers", None)
        if (
            not isinstance(definition, StrawberryField)
            or definition.base_resolver is None
            or not callable(definition.base_resolver.wrapped_func)
            or not all(_is_scope_guard(extension) for extension in definition.extensions)
            or converter is None
            or handlers is None
            or handlers(definition)  # exception handlers: Strawberry's wrapper applies them
        ):
            return None
        return Direct(
            definition,
            converter.config.info_class,
            converter.config,
            converter.scalar_registry,
        )

    def completion(self, type_: GraphQLOutputType, details: FieldDetailsList) -> Completion:
        non_null = is_non_null_type(type_)
        nullable = get_nullable_type(type_)
        if is_list_type(nullable):
            return Completion(non_null, item=self.completion(nullable.of_type, details))
        if is_leaf_type(nullable):
            return Completion(non_null, leaf=nullable, coerce=_coercer(nullable))
        if is_object_type(nullable):
            grouped, defer_usages, forbidden = collect_subfields(
                self.schema, self.fragments, self.no_variables, self.operation, nullable, details
            )
            if defer_usages or forbidden:
                raise Unplannable("incremental delivery")
            return Completion(
                non_null,
                object_type=nullable,
                steps=self.steps(nullable, grouped),
                accepted=set() if _strawberry_is_type_of(nullable.is_type_of) else None,
            )
        raise Unplannable("abstract type")

    def _guards(self, field_def: GraphQLField) -> None:
        definition = (field_def.extensions or {}).get(DEFINITION)
        for extension in getattr(definition, "extensions", None) or ():
            if isinstance(extension, PermissionExtension):
                self.scopes.update(
                    p.scope for p in extension.permissions if isinstance(p, HasScope)
                )


def _strawberry_is_type_of(is_type_of: Any) -> bool:
    """Whether ``is_type_of`` is the one Strawberry gives an object type implementing an
    interface (``GraphQLCoreConverter.from_object``): unless the object is cast
    (``strawberry.cast`` marks the instance) it answers ``isinstance`` of the type's classes
    (or, for a generic's specialisation, whether the object's class is the generic's), so
    for an unmarked instance its answer is its class's, and a plan asks it once per class."""
    return (
        getattr(is_type_of, "__module__", None) == "strawberry.schema.schema_converter"
        and getattr(is_type_of, "__name__", None) == "is_type_of"
    )


def _unmarked(value: Any) -> bool:
    """An instance whose own attributes say nothing about its Strawberry type (no cast
    mark, no definition of its own): Strawberry's ``is_type_of`` judges it by its class."""
    attributes = getattr(value, "__dict__", None)
    return (
        attributes is not None
        and TYPE_CAST_ATTRIBUTE not in attributes
        and DEFINITION_ATTRIBUTE not in attributes
    )


def _is_scope_guard(extension: Any) -> bool:
    """``requires(scope)``: a ``PermissionExtension`` whose checks are all ``HasScope`` (the
    class itself: a subclass may ask more than the principal's scopes), which does nothing
    to the arguments."""
    return (
        type(extension) is PermissionExtension
        and bool(extension.permissions)
        and all(type(permission) is HasScope for permission in extension.permissions)
        and type(extension).map_arguments is FieldExtension.map_arguments
    )


class _DocumentKey:
    """A plan's cache key: the schema and the parsed operation, by identity (AST nodes hash
    their whole tree). The parser cache hands back the same document for the same text, so
    this is the document's hash in effect. The fragments ride along (same document)."""

    __slots__ = ("fragments", "operation", "schema")

    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDetails],
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = fragments

    def __hash__(self) -> int:
        return hash((id(self.schema), id(self.operation)))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _DocumentKey)
            and other.schema is self.schema
            and other.operation is self.operation
        )


@lru_cache(maxsize=CACHE_SIZE)
def _operation_plan(key: _DocumentKey) -> OperationPlan | None:
    try:
        return _Compiler(key.schema, key.operation, key.fragments).compile()
    except Unplannable:
        return None


_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), datetime.datetime, datetime.date, datetime.time}
)


def _immutable(value: Any) -> bool:
    return type(value) in _IMMUTABLE or isinstance(value, Enum)


# The fields of the resolve info Strawberry's executor builds (``build_resolve_info``).
_INFO_FIELDS = (
    "field_name",
    "field_nodes",
    "return_type",
    "parent_type",
    "path",
    "schema",
    "fragments",
    "root_value",
    "operation",
    "variable_values",
    "context",
    "is_awaitable",
)


# (awaitable, its field's step, the object it goes into, field path, info)
_Pending = tuple[Any, "Step", dict[str, Any], Path, Any]
# Classes no instance of which is awaitable: the plain leaf types, lists, and the enums and
# Strawberry types (without ``__await__``) met so far, so each is asked about once, not every
# value (Strawberry's ``is_awaitable`` walks isinstance checks for them: ~5 % of a page).
_SYNC: set[type] = {str, int, float, bool, datetime.datetime, datetime.date, list, tuple}


def _learn_sync(cls: type) -> None:
    if (issubclass(cls, Enum) or DEFINITION_ATTRIBUTE in cls.__dict__) and not hasattr(
        cls, "__await__"
    ):
        _SYNC.add(cls)


async def settle_together(awaitables: list[Any]) -> list[Any]:
    """``asyncio.gather(*awaitables, return_exceptions=True)`` without a Task per awaitable.

    A wave of the Studio page is ~200 resolver coroutines that each wait on one DataLoader
    future; a Task apiece (create, schedule, step, wake, done-callback) costs about as much
    as the resolvers themselves. Here each coroutine is stepped in the calling task the way a
    Task steps it: up to the future it waits on, and on again from that future's done
    callback; the calling task sleeps until some coroutine can go on. (Waiting on the
    futures in turn instead would deadlock: one coroutine's future may be a lock another
    holds.) A coroutine that yields anything but an asyncio future or a bare ``yield`` is
    closed and reported as an error, which abandons the plan.
    """
    loop = asyncio.get_running_loop()
    results: list[Any] = [None] * len(awaitables)
    suspended: dict[int, Any] = {}  # index -> coroutine waiting on a future
    ready: list[int] = []
    wake: list[asyncio.Future[None]] = []

    def resume(index: int) -> None:
        ready.append(index)
        if wake and not wake[0].done():
            wake[0].set_result(None)

    def step(index: int, coroutine: Any) -> None:
        try:
            yielded = coroutine.send(None)
        except StopIteration as stop:
            results[index] = stop.value
        except (Exception, asyncio.CancelledError) as error:  # a result: return_exceptions
            results[index] = error
        else:
            suspended[index] = coroutine
            if yielded is None:  # a bare yield: go on once the loop has run
                loop.call_soon(resume, index)
            elif getattr(yielded, "_asyncio_future_blocking", False):
                yielded._asyncio_future_blocking = False
                yielded.add_done_callback(lambda _: resume(index))
            else:
                del suspended[index]
                coroutine.close()
                results[index] = RuntimeError(f"yielded {yielded!r}, not a future")

    try:
        for index, awaitable in enumerate(awaitables):
            if not isinstance(awaitable, CoroutineType):
                awaitable = _awaited(awaitable)
            step(index, awaitable)
        while suspended:
            if not ready:
                wake[:] = [loop.create_future()]
                await wake[0]
            now, ready[:] = ready[:], []
            for index in now:
                step(index, suspended.pop(index))
    finally:
        for coroutine in suspended.values():  # only when this task is cancelled
            coroutine.close()
    return results


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _PlanRun:
    """One execution of a plan: waves of synchronous work, each ending in one gather."""

    __slots__ = (
        "arguments",
        "converted",
        "executor",
        "groups",
        "info_template",
        "is_awaitable",
        "pending",
        "queue",
    )

    def __init__(self, executor: StudioExecutionContext) -> None:
        self.executor = executor
        self.is_awaitable = executor.is_awaitable
        # (steps, source, out, path): objects whose selections are still to execute
        self.queue: list[tuple[list[Step], Any, dict[str, Any], Path | None]] = []
        self.pending: list[_Pending] = []
        # id(step) -> (step, its objects' (source, out, path)): loaded fields of the wave
        self.groups: dict[int, tuple[Step, list[tuple[Any, dict[str, Any], Path | None]]]] = {}
        self.arguments: dict[int, dict[str, Any]] = {}
        self.converted: dict[int, dict[str, Any]] = {}
        # (class, entries after the path) of the executor's resolve infos, once one is
        # built; False: build each one with the executor (``info``)
        self.info_template: tuple[type[Any], tuple[Any, ...]] | bool | None = None

    async def run(self, plan: OperationPlan, root_value: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        self.queue.append((plan.steps, root_value, data, None))
        while True:
            try:
                self.walk()
            except BaseException:
                self.groups.clear()  # nothing started for them yet
                await self.settle()  # nothing is left running behind graphql-core
                raise
            if not self.pending and not self.groups:
                return data
            pending, groups = self.pending, list(self.groups.values())
            values = await self.settle()
            for (_, step, out, path, info), value in zip(
                pending, values[: len(pending)], strict=True
            ):
                self.complete(step.completion, value, out, step.key, path, info, step)
            for (step, items), found in zip(groups, values[len(pending) :], strict=True):
                if isinstance(found, BaseException):
                    raise Abandon
                for (_, out, parent), value in zip(items, found, strict=True):
                    field_path = Path(parent, step.key, step.parent_type.name)
                    self.complete(step.completion, value, out, step.key, field_path, None, step)

    async def settle(self) -> list[Any]:
        """Every awaitable of the wave at once (their loads share DataLoader batches), then
        one ``resolve_many`` per loaded field of the wave: a list of values in order."""
        pending, self.pending = self.pending, []
        groups, self.groups = self.groups, {}
        awaitables = [p[0] for p in pending]
        for step, items in groups.values():
            assert step.loaded is not None
            assert step.direct is not None
            raw = self._info(step, Path(items[0][2], step.key, step.parent_type.name))
            info = step.direct.info_class(_raw_info=raw, _field=step.direct.field)
            awaitables.append(step.loaded.resolve_many([item[0] for item in items], info))
        if not awaitables:
            return []
        return await settle_together(awaitables)

    def walk(self) -> None:
        """Execute the queued objects' selections, and those of the objects their
        synchronous fields complete to (the queue grows while it is walked)."""
        is_awaitable = self.is_awaitable
        for steps, source, out, path in self.queue:
            for step in steps:
                action = step.action
                if action == READ_LEAF:
                    value = getattr(source, step.attribute)
                    if value is None or value is Undefined:
                        if step.completion.non_null:
                            raise Abandon
                        out[step.key] = None
                        continue
                    if type(value) not in _SYNC:
                        if is_awaitable(value):
                            raise Abandon
                        _learn_sync(type(value))
                    coerced = step.completion.coerce(value)  # type: ignore[misc]
                    if coerced is None or coerced is Undefined:
                        raise Abandon
                    out[step.key] = coerced
                elif action == READ:
                    field_path = Path(path, step.key, step.parent_type.name)
                    value = getattr(source, step.attribute)
                    self.complete(step.completion, value, out, step.key, field_path, None, step)
                elif step.loaded is not None:
                    out[step.key] = None  # its place in the response's key order
                    group = self.groups.get(id(step))
                    if group is None:
                        group = self.groups[id(step)] = (step, [])
                    group[1].append((source, out, path))
                elif action == RESOLVE:
                    self.resolve(step, source, out, path)
                else:
                    out[step.key] = step.parent_type.name
        self.queue.clear()

    def resolve(self, step: Step, source: Any, out: dict[str, Any], path: Path | None) -> None:
        field_path = Path(path, step.key, step.parent_type.name)
        info = self._info(step, field_path)
        direct = step.direct
        if direct is not None:
            result = direct(source, info, self._arguments(step), self.converted)
        else:
            result = step.field_def.resolve(source, info, **self._arguments(step))  # type: ignore[misc]
        if type(result) not in _SYNC and self.awaits(result):
            out[step.key] = None  # its place in the response's key order
            self.pending.append((result, step, out, field_path, info))
        else:
            self.complete(step.completion, result, out, step.key, field_path, info, step)

    def awaits(self, value: Any) -> bool:
        """``is_awaitable``, learning the classes that never are (``_SYNC``)."""
        if self.is_awaitable(value):
            return True
        _learn_sync(type(value))
        return False

    def _arguments(self, step: Step) -> dict[str, Any]:
        if not step.has_arguments:
            return {}
        found = self.arguments.get(id(step))
        if found is None:
            executor = self.executor
            details = step.details[0]
            found = self.arguments[id(step)] = get_argument_values(
                step.field_def,
                details.node,
                executor.variable_values,
                details.fragment_variable_values,
                executor.hide_suggestions,
            )
        return found

    def complete(
        self,
        completion: Completion,
        value: Any,
        out: Any,
        key: Any,
        path: Path,
        info: Any,
        step: Step,
    ) -> None:
        """Complete ``value`` into ``out[key]`` as graphql-core's ``complete_value`` would,
        or abandon the plan. ``path`` is the value's response path; ``info`` its field's
        resolve info, None until needed for a plain field."""
        if value is None or value is Undefined:
            if completion.non_null:
                raise Abandon
            out[key] = None
            return
        if isinstance(value, BaseException) or (type(value) not in _SYNC and self.awaits(value)):
            raise Abandon
        if completion.coerce is not None:
            coerced = completion.coerce(value)
            if coerced is None or coerced is Undefined:
                raise Abandon
            out[key] = coerced
            return
        item = completion.item
        if item is not None:
            if not isinstance(value, list | tuple):
                raise Abandon
            if info is None:  # every item gets the list field's info
                info = self._info(step, path)
            items: list[Any] = [None] * len(value)
            out[key] = items
            for index, element in enumerate(value):
                self.complete(item, element, items, index, path.add_key(index), info, step)
            return
        object_type = completion.object_type
        assert object_type is not None
        if object_type.is_type_of is not None:
            accepted = completion.accepted
            if accepted is None or type(value) not in accepted or not _unmarked(value):
                if info is None:
                    info = self._info(step, path)
                is_type = object_type.is_type_of(value, info)
                if self.is_awaitable(is_type) or not is_type:
                    raise Abandon
                if (
                    accepted is not None
                    and _unmarked(value)
                    and getattr(type(value), TYPE_CAST_ATTRIBUTE, None) is None
                ):
                    accepted.add(type(value))
        sub: dict[str, Any] = {}
        out[key] = sub
        self.queue.append((completion.steps, value, sub, path))

    def _info(self, step: Step, path: Path) -> Any:
        """The field's resolve info, as the executor's ``build_resolve_info`` makes it. Only
        the first four entries and the path differ between fields of one operation, so once
        one is built (and is Strawberry's, from Strawberry's method) the rest are that tuple
        with those entries replaced."""
        template = self.info_template
        if type(template) is tuple:
            info_class, suffix = template
            return tuple.__new__(info_class, (*step.info_prefix, path, *suffix))
        info = self.executor.build_resolve_info(step.field_def, step.nodes, step.parent_type, path)
        if template is None:
            usable = (
                type(self.executor).build_resolve_info
                is StrawberryGraphQLCoreExecutionContext.build_resolve_info
                and isinstance(info, tuple)
                and getattr(type(info), "_fields", None) == _INFO_FIELDS
                and tuple(info[:4]) == step.info_prefix
            )
            self.info_template = (type(info), tuple(info[5:])) if usable else False
        return info


class StudioExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        middleware = self.middleware_manager
        # A schema extension with a ``resolve`` hook wraps every field: no shortcut then.
        self._shortcuts = middleware is None or not middleware.middlewares

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self._operation_plan() if serially is None else None
        if plan is None:
            return super().execute_operation(serially)
        return self._execute_plan(plan)

    def _operation_plan(self) -> OperationPlan | None:
        if (
            not self._shortcuts
            or self.abort_signal is not None
            or self.hooks is not None
            or self.operation.operation is not OperationType.QUERY
        ):
            return None
        plan = _operation_plan(_DocumentKey(self.schema, self.operation, self.fragments))
        if plan is None or not plan.scopes:
            return plan
        principal = getattr(self.context_value, "principal", None)
        if principal is None or not all(principal.has(scope) for scope in plan.scopes):
            return None  # a guard would refuse: graphql-core reports it
        return plan

    async def _execute_plan(self, plan: OperationPlan) -> Any:
        try:
            data = await _PlanRun(self).run(plan, self.root_value)
        except Exception:  # Abandon, or a resolver's error: graphql-core reports it
            result = super().execute_operation()
            return await result if self.is_awaitable(result) else result
        return self.build_response(data)

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        if self._shortcuts:
            name = field_details_list[0].node.name.value
            found = _PLANS.get((id(parent_type), name))
            plan = (
                found[1]
                if found is not None and found[0] is parent_type
                else _plan(parent_type, name)
            )
            if plan is not None:
                attribute, non_null, leaf = plan
                try:
                    result = getattr(source, attribute)
                    if result is None or result is Undefined:
                        if not non_null:
                            return None
                    elif not self.is_awaitable(result):
                        coerced = leaf.coerce_output_value(result)
                        if coerced is not None and coerced is not Undefined:
                            return coerced
                except Exception:  # noqa: S110 - graphql-core reports it, below
                    pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
