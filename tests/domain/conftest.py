"""Fixtures for outbound-call tests: the process's real outbound client, a fake provider on
loopback, and names that resolve only through the test's resolver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from studio_integrations.domain.egress import system_resolver
from studio_integrations.services import outbound_client
from tests.fakes.provider import FakeProvider


@dataclass
class CountingResolver:
    """Answers from ``names`` (a name the real DNS does not know, e.g. ``provider.test``),
    else asks the system; counts lookups per name."""

    names: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups[host] = self.lookups.get(host, 0) + 1
        if host in self.names:
            return list(self.names[host])
        return await system_resolver(host, port)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = outbound_client()  # the process's shared client, as Services builds it
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    async with fake.running():
        yield fake


@pytest.fixture
def resolver() -> CountingResolver:
    return CountingResolver(names={"provider.test": ["127.0.0.1"]})
