"""``studio-integrations seed-demo --tenant acme``, run as an operator runs it (a subprocess
with STUDIO_* settings), on both back ends: demo credentials in the configured vault and demo
connections with recorded runs, created once however often it runs, without any network, and
then served by the API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator

from studio_integrations.app import create_app
from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import (
    AuditEvent,
    Credential,
    IntegrationConnection,
    IntegrationRun,
    Provider,
    RunAttempt,
    VaultSecretVersion,
)
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory
from tests.connections.conftest import stop_prober
from tests.support.graphql import gql
from tests.support.live import serve
from tests.support.rows import row_counts

DEMO = """
{
  integrationConnections(filter: {projectId: "demo"}, orderBy: {field: NAME, direction: ASC}) {
    nodes {
      name status authMode configuration createdBy
      provider { key configurationSchema }
      credential { keyVaultRef authMode currentVersion }
      runs(first: 5) {
        nodes { kind status httpStatus externalRef latencyMs attempts { number httpStatus errorCategory } }
      }
    }
  }
}
"""


async def seed_demo(settings: Settings, tenant: str = "acme") -> tuple[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STUDIO_") and k.lower() not in {"http_proxy", "https_proxy"}
    }
    assert settings.master_key is not None
    env.update(
        STUDIO_DATABASE_URL=settings.database_url,
        STUDIO_STATE_DIR=str(settings.state_dir),
        STUDIO_MASTER_KEY=settings.master_key.get_secret_value(),
        # As make run: the demo connections call the in-app sandbox on loopback.
        STUDIO_ALLOW_LOOPBACK_TARGETS="true",
        STUDIO_DEMO_SANDBOX="true",
        # No route out: seeding must not need the network.
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "studio_integrations.cli",
        "seed-demo",
        "--tenant",
        tenant,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def counts(settings: Settings) -> dict[str, int]:
    db = Database(settings.database_url)
    try:
        return await row_counts(
            db,
            providers=Provider,
            credentials=Credential,
            connections=IntegrationConnection,
            runs=IntegrationRun,
            attempts=RunAttempt,
            secret_versions=VaultSecretVersion,
            audit_events=AuditEvent,
        )
    finally:
        await db.dispose()


async def test_seed_demo_is_idempotent_and_served(
    settings: Settings, make_token: TokenFactory, tmp_path: Path
) -> None:
    before = await counts(settings)
    first_out, first_err = await seed_demo(settings)
    after_first = await counts(settings)
    second_out, second_err = await seed_demo(settings)
    after_second = await counts(settings)

    assert after_second == after_first
    added = {k: after_first[k] - before[k] for k in before}
    assert added["credentials"] == 3
    assert added["connections"] == 3
    assert added["secret_versions"] == 3
    assert added["runs"] == 6
    assert added["attempts"] == 7  # Braze's first probe was retried once
    assert "3 secrets, 3 credentials and 3 connections created" in first_err
    assert "0 secrets, 0 credentials and 0 connections created" in second_err

    async with serve(create_app(settings)) as live:
        await stop_prober(live.services)  # it would probe the demo connections
        vault = live.services.vault
        token = make_token(tenant="acme")
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            body = await gql(http, DEMO, token=token)
            assert "errors" not in body, body
            nodes = body["data"]["integrationConnections"]["nodes"]
            other = await gql(http, DEMO, token=make_token(tenant="globex"))
        values = []
        for node in nodes:
            name = node["credential"]["keyVaultRef"].rsplit("/", 1)[1]
            secret = await vault.get_secret(name, node["credential"]["currentVersion"])
            values.append(secret.value)

    assert [(n["name"], n["provider"]["key"], n["authMode"]) for n in nodes] == [
        ("Braze campaigns (US)", "braze-sandbox", "BEARER_TOKEN"),
        ("Deputy rostering (AU)", "deputy-sandbox", "BEARER_TOKEN"),
        ("Twilio SMS alerts", "twilio-sandbox", "BASIC"),
    ]
    for node in nodes:
        assert node["status"] in ("ACTIVE", "DEGRADED")
        assert node["createdBy"] == "seed-demo"
        assert node["credential"]["authMode"] == node["authMode"]
        assert node["credential"]["keyVaultRef"].startswith("local://vault/secrets/demo-acme-")
        schema = node["provider"]["configurationSchema"]
        assert list(Draft202012Validator(schema).iter_errors(node["configuration"])) == []
        refs = {r["externalRef"] for r in node["runs"]["nodes"]}
        key = node["provider"]["key"].removesuffix("-sandbox")
        assert f"{key}-200-b" in {ref.removeprefix("demo-") for ref in refs if ref}
        assert all(a["number"] >= 1 for r in node["runs"]["nodes"] for a in r["attempts"])
    # (The server's prober may already have added a probe of its own: pick the demo's.)
    braze = nodes[0]["runs"]["nodes"]
    limited = next(r for r in braze if r["externalRef"] == "demo-braze-429-2")
    assert (limited["kind"], limited["status"]) == ("PROBE", "FAILED")
    assert [(a["httpStatus"], a["errorCategory"]) for a in limited["attempts"]] == [
        (429, "RATE_LIMITED"),
        (429, "RATE_LIMITED"),
    ]
    # Twilio's BASIC secret is "<accountSid>:<token>" for the configured account.
    assert values[2].startswith(nodes[2]["configuration"]["accountSid"] + ":")
    assert len(set(values)) == 3 and all(len(v) >= 32 for v in values)
    printed = first_out + first_err + second_out + second_err + json.dumps(body)
    assert not any(v in printed for v in values)
    # Another tenant sees none of it.
    assert other["data"]["integrationConnections"]["nodes"] == []
