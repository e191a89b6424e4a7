"""Demo data for ``make run``: what a new operator sees on first start.

Idempotent: running it again changes nothing that is already there. Each area adds its own
seeder to ``SEEDERS``.

``seed_connections`` gives the demo tenant a few credentials and connections, so GraphiQL and
the dashboard have something to show, alive without the internet:

- the connections call a *sandbox* copy of a catalogue provider (Deputy, Braze, Twilio: same
  auth, verification request and configuration schema, registered for the tenant as
  ``<key>-sandbox``) whose base URL is this service's own ``/sandbox/<scenario>`` (served
  when ``STUDIO_DEMO_SANDBOX`` is on; ``make run`` turns it on with
  ``STUDIO_ALLOW_LOOPBACK_TARGETS``, which the egress policy needs for a loopback target).
  The scenarios make the health prober's real behaviour show every state: Deputy answers
  every call (HEALTHY), Braze rate-limits every third (DEGRADED), Twilio is down (UNHEALTHY,
  circuit OPEN, its failure group ESCALATED);

- each credential's secret is a random value written straight into the configured vault
  (local or Azure Key Vault) through the ``SecretStore``, tagged with the tenant like any
  secret put in with ``secret set --tenant``, then bound by ``register_credential``;
- each connection is established through ``establish_connection`` with valid configuration
  and ``run_test`` off: seeding never calls a provider, so it works offline;
- each new connection gets two recorded probe runs (``record_run``, as the health prober
  would write them; Braze's first one rate limited, with its retried attempts), so the
  detail view shows runs, attempts, latency, ``externalRef`` and a health state.

Everything is matched by name (the secret, the credential's reference, the connection's name
in the ``demo`` project), so a second run creates nothing. The values are never printed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import ActionContext, Actor
from studio_integrations.core.enums import (
    ActorKind,
    AuthMode,
    FailureCategory,
    RotationStrategy,
    RunKind,
)
from studio_integrations.core.trace import new_trace_id
from studio_integrations.domain.connections import (
    ConnectionDefinition,
    establish_connection,
    record_run,
)
from studio_integrations.domain.credentials import (
    TENANT_TAG,
    CredentialDefinition,
    RotationPolicy,
    register_credential,
)
from studio_integrations.domain.health import HealthPolicy
from studio_integrations.domain.providers import ProviderDefinition, register_provider
from studio_integrations.outbound.provider_calls import CallAttempt, CallOutcome, ProviderCaller
from studio_integrations.persistence.connections import ConnectionRepository
from studio_integrations.persistence.credentials import CredentialRepository
from studio_integrations.persistence.db import Database, TenantScope, TenantSessions
from studio_integrations.persistence.providers import ProviderRepository
from studio_integrations.seed.catalogue import load_catalogue, read_catalogue
from studio_integrations.settings import Settings
from studio_integrations.vault.base import SecretNotFound, SecretStore
from studio_integrations.vault.factory import make_secret_store

Seeder = Callable[[Database, Settings, str], Awaitable[list[str]]]

DEMO_PROJECT = "demo"
DEMO_ACTOR = Actor(subject="seed-demo", kind=ActorKind.SYSTEM, name="Demo data")


async def seed_catalogue(db: Database, _settings: Settings, _tenant_id: str) -> list[str]:
    """The global provider catalogue first: the other areas' demo data refers to it."""
    return [(await load_catalogue(db)).summary()]


# --- The sandbox the demo connections call ------------------------------------------------

SANDBOX_PATH = "/sandbox"


@dataclass(frozen=True, slots=True)
class SandboxScenario:
    """How the sandbox answers one demo connection's calls (served by ``sandbox.py``)."""

    name: str
    fail_every: int  # 0: never; n: the 1st, (n+1)th, (2n+1)th … call fails
    failure_status: int
    latency_ms: tuple[float, float]


SANDBOX_SCENARIOS: dict[str, SandboxScenario] = {
    s.name: s
    for s in (
        SandboxScenario("healthy", fail_every=0, failure_status=200, latency_ms=(40, 120)),
        # A third of the calls rate limited: DEGRADED (error rate ≥ 10 %), never 3 in a row.
        SandboxScenario("flaky", fail_every=3, failure_status=429, latency_ms=(150, 400)),
        # Down: DEGRADED at once, UNHEALTHY after 3 probes, circuit OPEN after 5.
        SandboxScenario("failing", fail_every=1, failure_status=503, latency_ms=(20, 60)),
    )
}


def sandbox_base_url(settings: Settings) -> str:
    """Where this service serves the sandbox, as its own prober reaches it."""
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}{SANDBOX_PATH}"


# --- Demo credentials and connections ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoConnection:
    provider_key: str
    name: str
    vault_entry: str
    auth_mode: AuthMode
    configuration: Callable[[str], dict[str, Any]] = field(repr=False)
    value: Callable[[dict[str, Any]], str] = field(repr=False)
    scenario: str = "healthy"  # how the sandbox answers it (SANDBOX_SCENARIOS)
    flaky: bool = False  # its first recorded probe was rate limited


def _twilio_sid(slug: str) -> str:
    return "AC" + hashlib.sha256(f"demo-twilio:{slug}".encode()).hexdigest()[:32]


DEMO_CONNECTIONS: tuple[DemoConnection, ...] = (
    DemoConnection(
        provider_key="deputy",
        name="Deputy rostering (AU)",
        vault_entry="deputy-token",
        auth_mode=AuthMode.BEARER_TOKEN,
        configuration=lambda slug: {"install": f"{slug}-demo"[:63], "geo": "au"},
        value=lambda _config: secrets.token_hex(16),
    ),
    DemoConnection(
        provider_key="braze",
        name="Braze campaigns (US)",
        vault_entry="braze-key",
        auth_mode=AuthMode.BEARER_TOKEN,
        configuration=lambda _slug: {"restEndpoint": "rest.iad-01.braze.com"},
        value=lambda _config: secrets.token_urlsafe(27),
        scenario="flaky",
        flaky=True,
    ),
    DemoConnection(
        provider_key="twilio",
        name="Twilio SMS alerts",
        vault_entry="twilio-basic",
        auth_mode=AuthMode.BASIC,
        configuration=lambda slug: {"accountSid": _twilio_sid(slug)},
        value=lambda config: f"{config['accountSid']}:{secrets.token_hex(16)}",
        scenario="failing",
    ),
)


def _slug(tenant_id: str) -> str:
    """A tenant id as vault-name and host-label text, with a hash so that two tenants whose
    ids differ only in punctuation never share a secret."""
    base = re.sub(r"[^a-z0-9]+", "-", tenant_id.lower()).strip("-")[:40] or "tenant"
    return f"{base}-{hashlib.sha256(tenant_id.encode()).hexdigest()[:6]}"


async def _ensure_secret(vault: SecretStore, name: str, tenant_id: str, value: str) -> bool:
    """Put a random value into the vault unless the tenant's secret is there; True if put."""
    try:
        versions = await vault.list_versions(name)
    except SecretNotFound:
        versions = []
    if versions and versions[-1].tags.get(TENANT_TAG) == tenant_id:
        return False
    await vault.set_secret(name, value, tags={TENANT_TAG: tenant_id})
    return True


async def _ensure_sandbox_provider(
    db: Database, ctx: ActionContext, settings: Settings, demo: DemoConnection
) -> str | None:
    """The tenant's sandbox copy of the demo's catalogue provider (its id), made once."""
    key = f"{demo.provider_key}-sandbox"
    scope = TenantScope.of(ctx.tenant_id)
    async with db.session(scope) as session:
        existing = [p for p in await ProviderRepository(session).by_key(key) if p.tenant_id]
    if existing:
        return existing[0].id
    entry = next(
        (e.provider for e in read_catalogue().entries if e.provider.key == demo.provider_key),
        None,
    )
    if entry is None:  # not in this catalogue: nothing to imitate
        return None
    async with db.transaction(scope) as session:
        provider = await register_provider(
            session,
            ctx,
            definition=ProviderDefinition(
                key=key,
                name=f"{entry.name} (sandbox)",
                category=entry.category,
                capabilities=entry.capabilities,
                auth_modes=entry.auth_modes,
                base_url=f"{sandbox_base_url(settings)}/{demo.scenario}",
                verification=entry.verification,
                configuration_schema=entry.configuration_schema,
                description=f"The demo's stand-in for {entry.name}, served by this service.",
                latency_threshold_ms=entry.latency_threshold_ms,
                auth_scheme=entry.auth_scheme,
            ),
            # Only reached with loopback targets allowed (``seed_connections``).
            allow_loopback=settings.allow_loopback_targets,
        )
        return provider.id


async def _ensure_credential(
    db: Database, vault: SecretStore, ctx: ActionContext, demo: DemoConnection, ref: str
) -> tuple[str, str, bool]:
    """(credential id, pinned version, created)."""
    scope = TenantScope.of(ctx.tenant_id)
    async with db.session(scope) as session:
        existing = await CredentialRepository(session).by_reference(ref)
        if existing is not None:
            return existing.id, existing.current_version, False
    async with db.transaction(scope) as session:
        credential = await register_credential(
            session,
            ctx,
            vault=vault,
            definition=CredentialDefinition(
                key_vault_ref=ref,
                auth_mode=demo.auth_mode,
                rotation_strategy=RotationStrategy.EXTERNAL,
                rotation_policy=RotationPolicy(cadence_days=90, expiry_warning_days=14),
                expires_at=utcnow() + timedelta(days=180),
                name=f"{demo.name} (demo)",
            ),
        )
        return credential.id, credential.current_version, True


def _demo_runs(ref_prefix: str, *, flaky: bool) -> list[tuple[CallOutcome, Any]]:
    """Two probes half an hour and a quarter of an hour ago, (outcome, started_at): the
    first rate limited (two attempts) when ``flaky``, else passing; the second passing."""
    failed_at = utcnow() - timedelta(minutes=30)
    passed_at = failed_at + timedelta(minutes=15)
    limited = tuple(
        CallAttempt(
            number=n,
            started_at=failed_at + timedelta(seconds=2 * (n - 1)),
            latency_ms=latency,
            http_status=429,
            category=FailureCategory.RATE_LIMITED,
            message="HTTP 429 Too Many Requests (demo data)",
            external_ref=f"{ref_prefix}-429-{n}",
        )
        for n, latency in ((1, 88.0), (2, 91.5))
    )

    def passed(started_at: Any, latency_ms: float, ref: str) -> tuple[CallOutcome, Any]:
        attempt = CallAttempt(
            number=1,
            started_at=started_at,
            latency_ms=latency_ms,
            http_status=200,
            category=None,
            message=None,
            external_ref=ref,
        )
        outcome = CallOutcome(
            ok=True,
            status=200,
            latency_ms=latency_ms,
            attempts=(attempt,),
            external_ref=ref,
            category=None,
            message=None,
        )
        return outcome, started_at

    last = passed(passed_at, 142.0, f"{ref_prefix}-200-b")
    if not flaky:
        return [passed(failed_at, 156.0, f"{ref_prefix}-200-a"), last]
    return [
        (
            CallOutcome(
                ok=False,
                status=429,
                latency_ms=limited[-1].latency_ms,
                attempts=limited,
                external_ref=limited[-1].external_ref,
                category=FailureCategory.RATE_LIMITED,
                message="HTTP 429 Too Many Requests (demo data)",
            ),
            failed_at,
        ),
        last,
    ]


async def seed_connections(db: Database, settings: Settings, tenant_id: str) -> list[str]:
    """Demo credentials (random values in the configured vault) and connections to the
    sandbox, with runs."""
    if not settings.allow_loopback_targets:
        return [
            f"demo connections for tenant {tenant_id}: skipped, their sandbox provider is on "
            "loopback; set STUDIO_ALLOW_LOOPBACK_TARGETS=true and STUDIO_DEMO_SANDBOX=true "
            "(make run does)"
        ]
    slug = _slug(tenant_id)
    scope = TenantScope.of(tenant_id)
    ctx = ActionContext(tenant_id=tenant_id, actor=DEMO_ACTOR, trace_id=new_trace_id())
    vault = make_secret_store(settings, db)
    # Establishing checks each URL against the egress policy without the network; nothing
    # is ever sent through this client (no live test).
    http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
    caller = ProviderCaller(http, allow_loopback=settings.allow_loopback_targets)
    policy = HealthPolicy.from_settings(settings)
    created = {"secrets": 0, "credentials": 0, "connections": 0}
    try:
        for demo in DEMO_CONNECTIONS:
            provider_id = await _ensure_sandbox_provider(db, ctx, settings, demo)
            if provider_id is None:  # not in this catalogue: nothing to connect to
                continue
            configuration = demo.configuration(slug)
            secret_name = f"demo-{slug}-{demo.vault_entry}"
            if await _ensure_secret(vault, secret_name, tenant_id, demo.value(configuration)):
                created["secrets"] += 1
            credential_id, version, new_credential = await _ensure_credential(
                db, vault, ctx, demo, f"{vault.vault_url}/secrets/{secret_name}"
            )
            created["credentials"] += new_credential
            async with db.session(scope) as session:
                live = await ConnectionRepository(session).live_with_name(DEMO_PROJECT, demo.name)
            if live is not None:
                continue
            result = await establish_connection(
                TenantSessions(db, scope),
                ctx,
                vault=vault,
                caller=caller,
                policy=policy,
                definition=ConnectionDefinition(
                    provider_id=provider_id,
                    name=demo.name,
                    project_id=DEMO_PROJECT,
                    auth_mode=demo.auth_mode,
                    credential_id=credential_id,
                    configuration=configuration,
                    run_test=False,
                    # The operator seeding the demo binds its own credentials.
                    may_widen_credential_audience=True,
                ),
            )
            assert result.connection is not None
            created["connections"] += 1
            async with db.transaction(scope) as session:
                runs = _demo_runs(f"demo-{demo.provider_key}", flaky=demo.flaky)
                for outcome, started_at in runs:
                    await record_run(
                        session,
                        ctx,
                        connection_id=result.connection.id,
                        kind=RunKind.PROBE,
                        outcome=outcome,
                        credential_version=version,
                        started_at=started_at,
                        policy=policy,
                    )
    finally:
        await http.aclose()
        await vault.close()
    return [
        f"demo connections for tenant {tenant_id} in {vault.vault_url}: "
        f"{created['secrets']} secrets, {created['credentials']} credentials and "
        f"{created['connections']} connections created "
        f"({len(DEMO_CONNECTIONS)} of each wanted; the rest were already there)"
    ]


SEEDERS: list[Seeder] = [seed_catalogue, seed_connections]


async def seed_demo(db: Database, settings: Settings, *, tenant_id: str) -> list[str]:
    lines: list[str] = []
    for seeder in SEEDERS:
        lines.extend(await seeder(db, settings, tenant_id))
    return lines or ["demo data: nothing to seed"]
