"""Settings (DESIGN §9): names, embedded defaults, parsing and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from studio_integrations.services import Services
from studio_integrations.settings import DEFAULT_RETRY_SCHEDULE, WORKERS, Settings


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("STUDIO_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.database_url == "sqlite+aiosqlite:///./studio.db"
    assert s.broadcast_url == "memory://"
    assert s.secret_store == "local"
    assert s.allow_loopback_targets is False
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.probe_interval_seconds == 60
    assert (
        s.webhook_retry_schedule
        == DEFAULT_RETRY_SCHEDULE
        == (5, 300, 1800, 7200, 18000, 36000, 36000)
    )
    assert s.jwt_jwks_url is None
    assert not s.uses_jwks


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "STUDIO_DATABASE_URL": "postgresql+asyncpg://postgres@db/studio",
        "STUDIO_BROADCAST_URL": "redis://redis:6379/0",
        "STUDIO_SECRET_STORE": "azure",
        "STUDIO_KEYVAULT_URL": "https://acme.vault.azure.net",
        "STUDIO_JWT_JWKS_URL": "https://login.example/keys",
        "STUDIO_JWT_ISSUER": "https://login.example/",
        "STUDIO_JWT_AUDIENCE": "api://studio",
        "STUDIO_DEV_SIGNING_KEY": "k" * 40,
        "STUDIO_ALLOW_LOOPBACK_TARGETS": "true",
        "STUDIO_HOST": "0.0.0.0",
        "STUDIO_PORT": "9000",
        "STUDIO_PROBE_INTERVAL_SECONDS": "5",
        "STUDIO_WEBHOOK_RETRY_SCHEDULE": "1, 2,3",
        "STUDIO_MASTER_KEY": "m" * 40,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.secret_store == "azure"
    assert s.keyvault_url == "https://acme.vault.azure.net"
    assert s.uses_jwks
    assert s.allow_loopback_targets is True
    assert s.port == 9000
    assert s.probe_interval_seconds == 5
    assert s.webhook_retry_schedule == (1, 2, 3)
    assert s.resolved_dev_signing_key == "k" * 40
    assert s.resolved_master_key == "m" * 40
    assert "k" * 40 not in repr(s)  # secrets are not printed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("STUDIO_PORT", "0"),
        ("STUDIO_PORT", "eighty"),
        ("STUDIO_SECRET_STORE", "hashicorp"),
        ("STUDIO_WEBHOOK_RETRY_SCHEDULE", "5,-1"),
        ("STUDIO_WEBHOOK_RETRY_SCHEDULE", ","),
        ("STUDIO_PROBE_INTERVAL_SECONDS", "0"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()


def test_workers_default_to_all_and_parse_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().workers == frozenset(WORKERS)
    monkeypatch.setenv("STUDIO_WORKERS", " relay, prober ")
    assert Settings().workers == frozenset({"relay", "prober"})
    monkeypatch.setenv("STUDIO_WORKERS", "")
    assert Settings().workers == frozenset()  # an API-only replica


def test_unknown_workers_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_WORKERS", "relay,probr")
    with pytest.raises(ValidationError, match="probr"):
        Settings()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.workers("relay", "scheduler")
async def test_a_process_starts_only_the_workers_it_is_told_to(services: Services) -> None:
    assert services.rotation_scheduler is not None and services.health_prober is not None
    assert services.rotation_scheduler._task is not None  # started
    assert not services.health_prober.running  # built (for /healthz) but not started
    assert services.webhook_dispatcher._task is None
