"""The request's DataLoaders: one registry, ``Loaders.get(batch)``, that makes a loader on
first use from a batch function of an area below and keeps it for the request (one HTTP
request, or one subscription event). A batch function takes the session opener and the keys
and answers one value per key, in one statement per batch (or per distinct limit or range).
A new area adds a batch function here and calls ``info.context.loaders.get(it)``.

A field that is one load per object and a conversion is declared with ``loaded_field`` (key,
batch, convert): its resolver loads through the request's DataLoader, and the operation plan
(``schema.execution``) resolves it for every object of a wave with one ``resolve_many`` call
instead of a resolver coroutine and a DataLoader future per object. Both come from the same
three functions, so they answer alike."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from functools import cache
from typing import Any, Generic, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader
from strawberry.extensions.field_extension import FieldExtension
from strawberry.types import Info

from studio_integrations.domain import connections as connections_domain
from studio_integrations.domain.credentials import connections_for_credentials
from studio_integrations.domain.providers import api_clients_for_providers
from studio_integrations.domain.webhooks import attempts_for_deliveries
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import (
    Base,
    ConnectionHealth,
    CredentialRotation,
    ExternalApiClient,
    HealthSnapshot,
    IntegrationConnection,
    IntegrationRun,
    RunAttempt,
    WebhookDeliveryAttempt,
)
from studio_integrations.persistence.repository import TenantRepository
from studio_integrations.persistence.rotations import RotationRepository

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
S = TypeVar("S")  # the object a field belongs to
R = TypeVar("R")  # the field's value
SessionOpener = Callable[[], AbstractAsyncContextManager[AsyncSession]]
Batch = Callable[[SessionOpener, list[K]], Awaitable[list[V]]]


class Loaders:
    """``read`` opens the session a batch reads in: the request's shared session over HTTP
    (``StudioContext.read``); by default a short read-only session per batch (subscription
    events)."""

    def __init__(
        self, db: Database, scope: TenantScope, *, read: SessionOpener | None = None
    ) -> None:
        self.read: SessionOpener = read or (lambda: db.read_session(scope))
        self._made: dict[Callable[..., Any], DataLoader[Any, Any]] = {}

    def get(self, batch: Batch[K, V]) -> DataLoader[K, V]:
        loader = self._made.get(batch)
        if loader is None:
            read = self.read

            async def load(keys: list[K]) -> list[V]:
                return await batch(read, keys)

            loader = self._made[batch] = DataLoader(load_fn=load)
        return loader

    async def load(self, batch: Batch[K, V], key: K) -> V:
        return await self.get(batch).load(key)

    async def load_all(self, batch: Batch[K, V], keys: Sequence[K]) -> list[V]:
        """``load`` of every key, in order, without a future and a wake-up per key: the keys
        no load has asked for yet are read with one call of ``batch``, and primed into its
        DataLoader so later loads of them read nothing. Raises what the batch raised (or a
        failed earlier load's error)."""
        loader = self.get(batch)
        cached = loader.cache_map
        missing = [key for key in dict.fromkeys(keys) if cached.get(key) is None]
        if missing:
            values = await batch(self.read, missing)
            loader.prime_many(dict(zip(missing, values, strict=True)))
        futures = []
        for key in keys:
            future = cached.get(key)
            assert future is not None  # primed above, if no load had asked for it
            futures.append(future)
        waiting = [f for f in futures if not f.done()]  # loads in flight since before
        if waiting:
            await asyncio.wait(waiting)
        return [f.result() for f in futures]

    def close(self) -> None:
        """Drop every DataLoader, and the rows they hold, when the request is over. Each
        one's load function refers back to the request (its ``read``): kept, that cycle
        would leave the rows to the cyclic collector instead of reference counting."""
        self._made.clear()

    def by_id(self, model: type[Base]) -> DataLoader[str, Any]:
        """Rows of ``model`` by id (None for an id the tenant cannot see)."""
        return self.get(rows_by_id(model))


class LoadedField(Generic[S, K, V, R]):
    """A field whose value is one load per object: ``key`` of the object (None: nothing to
    load, ``convert`` gets None), ``batch`` reads the values, ``convert`` makes the field's
    value from the loaded value alone (and may raise, as a resolver may)."""

    __slots__ = ("batch", "convert", "key")

    def __init__(
        self,
        batch: Batch[K, V],
        key: Callable[[S], K | None],
        convert: Callable[[V | None], R],
    ) -> None:
        self.batch = batch
        self.key = key
        self.convert = convert

    async def resolve(self, source: S, info: Info[Any, Any]) -> R:
        """The field's resolver: one object's value."""
        key = self.key(source)
        value = None if key is None else await info.context.loaders.load(self.batch, key)
        return self.convert(value)

    async def resolve_many(self, sources: Sequence[S], info: Info[Any, Any]) -> list[R]:
        """``resolve`` of every object with one ``load_all``, converting each loaded value
        once (50 connections share 3 providers). Raises where ``resolve`` of any one would
        raise (the operation plan then leaves it to graphql-core, which reports each field's
        error)."""
        keys = [self.key(source) for source in sources]
        wanted = [key for key in keys if key is not None]
        loaded = await info.context.loaders.load_all(self.batch, wanted) if wanted else []
        values = iter(loaded)
        convert = self.convert
        converted: dict[int, R] = {}  # id(value) -> its conversion (values are kept alive)
        results: list[R] = []
        for key in keys:
            value = None if key is None else next(values)
            result = converted.get(id(value), _MISSING)
            if result is _MISSING:
                result = converted[id(value)] = convert(value)
            results.append(result)
        return results


_MISSING: Any = object()
# Where ``loaded_field`` leaves its ``LoadedField`` on the resolver (the plan reads it).
LOADED_ATTRIBUTE = "__studio_loaded__"


def loaded_field(
    batch: Batch[K, V],
    *,
    key: Callable[[Any], K | None],
    convert: Callable[[V | None], R],
    description: str | None = None,
    extensions: Sequence[FieldExtension] = (),
) -> Any:
    """A Strawberry field (its type is the class annotation) resolved by a ``LoadedField``."""
    spec: LoadedField[Any, K, V, R] = LoadedField(batch, key, convert)

    async def resolve(root: Any, info: Info[Any, Any]) -> Any:
        return await spec.resolve(root, info)

    setattr(resolve, LOADED_ATTRIBUTE, spec)
    return strawberry.field(resolver=resolve, description=description, extensions=list(extensions))


def _one_per_key(found: dict[Any, list[V]], keys: list[Any]) -> list[list[V]]:
    return [found.get(k, []) for k in keys]


# --- Any model -----------------------------------------------------------------------------


@cache
def rows_by_id(model: type[Base]) -> Batch[str, Any]:
    """The batch function of one model (the same function each time, so one loader)."""

    async def batch(read: SessionOpener, ids: list[str]) -> list[Any]:
        async with read() as session:
            return await TenantRepository(session, model).get_many(ids)

    return batch


# --- Providers -----------------------------------------------------------------------------


async def api_clients_by_provider(
    read: SessionOpener, provider_ids: list[str]
) -> list[list[ExternalApiClient]]:
    """A provider's visible API clients in SemVer order."""
    async with read() as session:
        return _one_per_key(await api_clients_for_providers(session, provider_ids), provider_ids)


# --- Credentials and rotation --------------------------------------------------------------

# (credential id, how many of its newest rotations)
RotationsKey = tuple[str, int]


async def connections_by_credential(
    read: SessionOpener, credential_ids: list[str]
) -> list[list[IntegrationConnection]]:
    """The connections bound to a credential, newest first."""
    async with read() as session:
        found = await connections_for_credentials(session, credential_ids)
    return _one_per_key(found, credential_ids)


async def rotations_by_credential(
    read: SessionOpener, keys: list[RotationsKey]
) -> list[list[CredentialRotation]]:
    """A credential's newest n rotations: one statement per distinct n."""
    by_limit: dict[int, list[str]] = defaultdict(list)
    for credential_id, limit in keys:
        by_limit[limit].append(credential_id)
    found: dict[RotationsKey, list[CredentialRotation]] = {}
    async with read() as session:
        for limit, ids in by_limit.items():
            rows = await RotationRepository(session).for_credentials(ids, limit)
            for credential_id in ids:
                found[(credential_id, limit)] = rows.get(credential_id, [])
    return _one_per_key(found, keys)


async def runs_by_rotation(
    read: SessionOpener, rotation_ids: list[str]
) -> list[list[IntegrationRun]]:
    """A rotation's verification runs."""
    async with read() as session:
        return _one_per_key(await RotationRepository(session).runs_for(rotation_ids), rotation_ids)


# --- Connections and health ----------------------------------------------------------------

# (connection id, how many of its newest runs)
RunsKey = tuple[str, int]
# (connection id, from, to)
TimelineKey = tuple[str, datetime | None, datetime | None]


async def health_by_connection(
    read: SessionOpener, ids: list[str]
) -> list[ConnectionHealth | None]:
    """A connection's current health row (None before its first check)."""
    async with read() as session:
        found = await connections_domain.health_for_connections(session, ids)
    return [found.get(i) for i in ids]


async def latest_runs(read: SessionOpener, keys: list[RunsKey]) -> list[list[IntegrationRun]]:
    """The newest n runs of each connection: one statement per distinct n."""
    by_limit: dict[int, list[str]] = defaultdict(list)
    for connection_id, limit in keys:
        by_limit[limit].append(connection_id)
    found: dict[RunsKey, list[IntegrationRun]] = {}
    async with read() as session:
        for limit, ids in by_limit.items():
            runs = await connections_domain.latest_runs(session, ids, limit)
            for connection_id in ids:
                found[(connection_id, limit)] = runs.get(connection_id, [])
    return _one_per_key(found, keys)


async def attempts_by_run(read: SessionOpener, run_ids: list[str]) -> list[list[RunAttempt]]:
    async with read() as session:
        return _one_per_key(await connections_domain.attempts_for_runs(session, run_ids), run_ids)


async def health_timeline(
    read: SessionOpener, keys: list[TimelineKey]
) -> list[list[HealthSnapshot]]:
    """Snapshots per connection and range: one statement per distinct range."""
    by_range: dict[tuple[datetime | None, datetime | None], list[str]] = defaultdict(list)
    for connection_id, start, end in keys:
        by_range[(start, end)].append(connection_id)
    found: dict[TimelineKey, list[HealthSnapshot]] = {}
    async with read() as session:
        for (start, end), ids in by_range.items():
            rows = await connections_domain.health_timelines(session, ids, start, end)
            for connection_id in ids:
                found[(connection_id, start, end)] = rows.get(connection_id, [])
    return _one_per_key(found, keys)


# --- Webhooks ------------------------------------------------------------------------------


async def webhook_attempts(
    read: SessionOpener, delivery_ids: list[str]
) -> list[list[WebhookDeliveryAttempt]]:
    """A webhook delivery's attempts in order."""
    async with read() as session:
        return _one_per_key(await attempts_for_deliveries(session, delivery_ids), delivery_ids)
