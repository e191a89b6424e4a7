"""Fixtures for outbound-call tests: the process's real outbound client, a fake provider on
loopback, names that resolve only through the test's resolver, and a controllable clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from studio_integrations.core.enums import AuthMode
from studio_integrations.outbound.egress import system_resolver
from studio_integrations.outbound.provider_calls import ProviderCaller, ResolvedCredential
from studio_integrations.services import outbound_client
from studio_integrations.vault.base import SecretProperties, SecretValue
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


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSleep:
    """Records requested waits; sleeps for real only up to ``real_max`` seconds."""

    real_max: float = 0.05
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(min(seconds, self.real_max))


def credential(mode: AuthMode, value: str, *, version: str = "v1") -> ResolvedCredential:
    now = datetime.now(UTC)
    props = SecretProperties(
        name="provider-secret", version=version, enabled=True, created_at=now, updated_at=now
    )
    return ResolvedCredential(auth_mode=mode, secret=SecretValue(properties=props, value=value))


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


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


CallerFactory = Callable[..., ProviderCaller]


@pytest.fixture
def make_caller(
    http: httpx.AsyncClient, resolver: CountingResolver, sleeps: RecordingSleep
) -> CallerFactory:
    def make(**overrides: object) -> ProviderCaller:
        options: dict[str, object] = {
            "allow_loopback": True,
            "resolver": resolver,
            "backoff_base": 0.01,
            "backoff_max": 0.04,
            "retry_after_max": 10.0,
            "sleep": sleeps,
        }
        options.update(overrides)
        return ProviderCaller(http, **options)  # type: ignore[arg-type]

    return make
