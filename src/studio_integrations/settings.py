"""Settings: environment variables prefixed ``STUDIO_`` (DESIGN §9), embedded defaults.

With no environment at all the service runs self-contained: SQLite file, in-memory bus,
local encrypted vault and a development signing key created on first run under
``STUDIO_STATE_DIR``.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
# The background workers a process can run (``STUDIO_WORKERS``, comma-separated; default all).
WORKERS = ("relay", "dispatcher", "prober", "scheduler")
DEV_ISSUER = "studio-integrations-dev"
DEV_AUDIENCE = "studio-integrations"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./studio.db"
    broadcast_url: str = "memory://"
    secret_store: Literal["local", "azure"] = "local"
    keyvault_url: str | None = None

    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    dev_signing_key: SecretStr | None = None
    master_key: SecretStr | None = None

    allow_loopback_targets: bool = False
    # The demo's sandbox provider at /sandbox (domain/demo.py, sandbox.py); make run turns it on.
    demo_sandbox: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    probe_interval_seconds: float = Field(default=60, gt=0)
    # Credential rotation: how often the scheduler looks for due rotations and expiries, and how
    # long a rotation's claim lasts before a later run resolves it as abandoned.
    rotation_scheduler_interval_seconds: float = Field(default=300, gt=0)
    rotation_lease_seconds: float = Field(default=600, gt=0)
    # External health (DESIGN §8): the prober, the circuit breaker, the rolling window.
    probe_timeout_seconds: float = Field(default=5, gt=0)
    probe_concurrency: int = Field(default=10, ge=1)
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_failure_rate: float = Field(default=0.5, gt=0, le=1)
    circuit_minimum_calls: int = Field(default=10, ge=1)
    circuit_half_open_seconds: float = Field(default=30, gt=0)
    health_window_seconds: float = Field(default=300, gt=0)
    health_degraded_error_rate: float = Field(default=0.1, gt=0, le=1)
    failure_escalation_threshold: int = Field(default=5, ge=1)
    # Live subscriptions: events a subscriber may lag behind before it is dropped, and the
    # graphql-transport-ws keep-alive ping interval.
    subscription_queue_size: int = Field(default=256, ge=1)
    ws_keep_alive_seconds: float = Field(default=15, gt=0)
    webhook_retry_schedule: Annotated[tuple[int, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    # A subscription failing continuously this long is disabled (DESIGN §7: 5 days).
    webhook_disable_after_seconds: float = Field(default=5 * 24 * 3600, gt=0)
    # Inbound webhook bodies larger than this are refused (413) unread.
    webhook_inbound_max_bytes: int = Field(default=256 * 1024, gt=0)
    # How long a dispatcher's claim on a delivery lasts; a crashed claim is taken over after it.
    webhook_lease_seconds: float = Field(default=60, gt=0)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # Sends in flight per process, and per subscription (a slow endpoint gets no more).
    webhook_concurrency: int = Field(default=32, ge=1, le=1000)
    webhook_subscription_concurrency: int = Field(default=8, ge=1, le=1000)
    # SIGTERM -> exit: workers stop claiming, in-flight work finishes or is abandoned (its
    # leases released), connections close, all within this (DESIGN §12).
    shutdown_grace_seconds: float = Field(default=10, gt=0, le=300)

    # Not in DESIGN §9's list, but a mature service needs them; defaults fit the embedded run.
    state_dir: Path = Path(".studio")
    bus_namespace: str = "studio"
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    # Which background workers this process runs. Every replica runs all of them by default
    # (they share the work through leases); a replica that serves only API traffic sets none.
    workers: Annotated[frozenset[str], NoDecode] = frozenset(WORKERS)
    log_level: str = "INFO"

    # Observability (README "Observability"). OpenTelemetry is configured by the standard
    # OTEL_* variables. ``/metrics`` is served unless turned off; with a token it needs
    # ``Authorization: Bearer <token>``. Tenant labels multiply series: off by default.
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    metrics_tenant_labels: bool = False
    trace_url_template: str | None = None

    # Abuse limits (see auth/request_limits.py and schema/operation_limits.py). A per-minute
    # budget of 0 turns that budget off. Production mode turns introspection and GraphiQL off
    # unless set.
    environment: Literal["development", "production"] = "development"
    introspection: bool | None = None  # None: on in development, off in production
    graphiql: bool | None = None  # None: on in development, off in production
    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    max_header_bytes: int = Field(default=32 * 1024, gt=0)
    max_json_depth: int = Field(default=64, ge=2)
    max_query_cost: int = Field(default=50_000, gt=0)
    expensive_query_cost: int = Field(default=1_000, gt=0)
    tenant_mutations_per_minute: int = Field(default=600, ge=0)
    token_mutations_per_minute: int = Field(default=120, ge=0)
    tenant_expensive_queries_per_minute: int = Field(default=300, ge=0)
    token_expensive_queries_per_minute: int = Field(default=60, ge=0)
    max_subscriptions_per_connection: int = Field(default=50, ge=1)
    max_subscriptions_per_tenant: int = Field(default=1_000, ge=1)
    # Trusted documents (see graphql_http.py): APQ, a registered allowlist, or neither.
    trusted_documents: Literal["off", "apq", "allowlist"] = "apq"

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts:
                raise ValueError("STUDIO_WEBHOOK_RETRY_SCHEDULE needs at least one delay")
            return tuple(int(p) for p in parts)
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 0 for v in value):
            raise ValueError("retry delays must be zero or positive seconds")
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _parse_workers(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - set(WORKERS))
        if unknown:
            raise ValueError(f"unknown workers {unknown}; choose from {', '.join(WORKERS)}")
        return value

    @model_validator(mode="after")
    def _production_is_explicit(self) -> Settings:
        """Production never falls back to what the embedded default makes up: dev tokens
        signed with a key created in the state dir (one per replica, lost with it) or a
        vault key made the same way. Every missing setting is named at once."""
        if self.production:
            missing = self.missing_for_production()
            if missing:
                raise ValueError(
                    "STUDIO_ENVIRONMENT=production refuses to start without "
                    + ", ".join(missing)
                    + " (tokens come from your identity provider's JWKS; the local vault "
                    "needs an explicit master key)"
                )
        return self

    def missing_for_production(self) -> list[str]:
        """The settings production needs that are not set, by their environment names."""
        required = [
            ("STUDIO_JWT_JWKS_URL", self.jwt_jwks_url),
            ("STUDIO_JWT_ISSUER", self.jwt_issuer),
            ("STUDIO_JWT_AUDIENCE", self.jwt_audience),
        ]
        if self.secret_store == "local":
            key = self.master_key.get_secret_value() if self.master_key else None
            required.append(("STUDIO_MASTER_KEY", key))
        elif self.secret_store == "azure":
            required.append(("STUDIO_KEYVAULT_URL", self.keyvault_url))
        return [name for name, value in required if not (value or "").strip()]

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else not self.production

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.production

    @property
    def uses_jwks(self) -> bool:
        return bool(self.jwt_jwks_url)

    @property
    def token_issuer(self) -> str:
        return self.jwt_issuer or DEV_ISSUER

    @property
    def token_audience(self) -> str:
        return self.jwt_audience or DEV_AUDIENCE

    @cached_property
    def resolved_dev_signing_key(self) -> str:
        """The HS256 key: the setting, else a key kept in the state dir (made on first use).
        Never in production: dev tokens are not accepted there."""
        if self.production:
            raise RuntimeError("dev tokens are never signed or accepted in production")
        if self.dev_signing_key is not None:
            return self.dev_signing_key.get_secret_value()
        return _key_file(self.state_dir / "dev-signing-key")

    @cached_property
    def resolved_master_key(self) -> str:
        """The local vault's key (urlsafe base64 of 32 bytes): setting, else state-dir file."""
        if self.master_key is not None:
            return self.master_key.get_secret_value()
        return _key_file(self.state_dir / "master.key")


def _key_file(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # Created 0600 and exclusively, so the key is never readable by other users, and two
    # processes starting at once cannot write different keys (the loser reads the winner's).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
