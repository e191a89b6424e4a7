"""``Loaders.load_all``: the plan's one-call load for a wave shares the request's DataLoader
with ``load`` (what one read, the other does not read again), in order, with duplicates,
and fails as the batch fails; ``LoadedField.resolve_many`` answers as ``resolve`` does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from studio_integrations.persistence.db import TenantScope
from studio_integrations.resolvers.loaders import LoadedField, Loaders


@contextlib.asynccontextmanager
async def _no_session() -> AsyncIterator[Any]:
    yield None


class Source:
    def __init__(self, values: dict[str, str], fail: bool = False) -> None:
        self.values = values
        self.fail = fail
        self.batches: list[list[str]] = []

    async def __call__(self, read: Any, keys: list[str]) -> list[str | None]:
        self.batches.append(list(keys))
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("the database is gone")
        return [self.values.get(key) for key in keys]


def _loaders() -> Loaders:
    return Loaders(None, TenantScope.of("acme"), read=_no_session)  # type: ignore[arg-type]


async def test_load_all_reads_only_what_no_load_has_read() -> None:
    source = Source({"a": "A", "b": "B", "c": "C"})
    loaders = _loaders()
    assert await loaders.load(source, "a") == "A"
    assert await loaders.load_all(source, ["b", "a", "x", "b"]) == ["B", "A", None, "B"]
    assert await loaders.load(source, "b") == "B"  # primed: not read again
    assert await loaders.load_all(source, ["c", "a"]) == ["C", "A"]
    assert source.batches == [["a"], ["b", "x"], ["c"]]


async def test_load_all_waits_for_a_load_in_flight() -> None:
    source = Source({"a": "A", "b": "B"})
    loaders = _loaders()
    pending = asyncio.ensure_future(loaders.load(source, "a"))
    await asyncio.sleep(0)  # the DataLoader has the key, its batch not yet answered
    assert await loaders.load_all(source, ["a", "b"]) == ["A", "B"]
    assert await pending == "A"
    assert sorted(map(sorted, source.batches)) == [["a"], ["b"]]


async def test_load_all_raises_what_the_batch_raises() -> None:
    source = Source({}, fail=True)
    with pytest.raises(RuntimeError, match="the database is gone"):
        await _loaders().load_all(source, ["a"])


async def test_resolve_many_converts_each_loaded_value_once_in_order() -> None:
    """One ``load_all`` for the wave; a value several objects share (their provider) is
    converted once; an object without a key gets ``convert(None)``, as ``resolve`` gives."""
    source = Source({"p1": "one", "p2": "two"})
    converted: list[str | None] = []

    def convert(value: str | None) -> str:
        converted.append(value)
        return f"<{value}>"

    field: LoadedField[dict[str, str | None], str, str, str] = LoadedField(
        source, lambda obj: obj["provider"], convert
    )
    info: Any = SimpleNamespace(context=SimpleNamespace(loaders=_loaders()))
    objects = [{"provider": p} for p in ("p1", "p2", "p1", None, "p1")]
    assert await field.resolve_many(objects, info) == [
        "<one>",
        "<two>",
        "<one>",
        "<None>",
        "<one>",
    ]
    assert source.batches == [["p1", "p2"]]
    assert converted == ["one", "two", None]
    one_by_one = [await field.resolve(obj, info) for obj in objects]
    assert one_by_one == ["<one>", "<two>", "<one>", "<None>", "<one>"]
