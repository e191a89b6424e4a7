"""The demo alive offline: the seeded connections call the in-app sandbox, and the real
prober turns its scenarios into every health state."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.seed.demo import seed_demo
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.connections.conftest import stop_prober
from tests.health.conftest import PROBE_INTERVAL, Clock, make_prober
from tests.support.backends import Backend
from tests.support.graphql import gql
from tests.support.live import serve

HEALTH = """
{
  externalHealth {
    connections { connection { name provider { key baseUrl } } status circuitState errorRate }
  }
  integrationFailures(first: 50) {
    nodes { category escalation connection { name } run { httpStatus externalRef } }
  }
}
"""


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, demo_sandbox=True)


async def test_demo_connections_show_healthy_degraded_and_unhealthy_offline(
    settings: Settings, clock: Clock, make_token: TokenFactory
) -> None:
    async with serve(create_app(settings)) as live:
        await stop_prober(live.services)  # this test drives the prober on its own clock
        seeded = settings.model_copy(update={"port": live.port})  # where the sandbox is
        await seed_demo(live.services.db, seeded, tenant_id="acme")
        prober = make_prober(live.services, clock)
        probed = 0
        for _ in range(40):
            clock.advance(PROBE_INTERVAL)
            probed += await prober.probe_once()
            if probed >= 3 * 6:
                break
        assert probed >= 3 * 6, "each demo connection is probed six times"
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            body = await gql(http, HEALTH, token=make_token(tenant="acme"))
    assert "errors" not in body, body
    health = {
        c["connection"]["name"]: (c["status"], c["circuitState"])
        for c in body["data"]["externalHealth"]["connections"]
    }
    assert health == {
        "Deputy rostering (AU)": ("HEALTHY", "CLOSED"),
        "Braze campaigns (US)": ("DEGRADED", "CLOSED"),  # every third call rate limited
        "Twilio SMS alerts": ("UNHEALTHY", "OPEN"),  # down: 5 failures open the circuit
    }
    for entry in body["data"]["externalHealth"]["connections"]:
        assert entry["connection"]["provider"]["baseUrl"].startswith(f"{live.url}/sandbox/")
    probes = [
        f for f in body["data"]["integrationFailures"]["nodes"] if f["run"]["externalRef"]
    ]  # the live probes' failures (the seeded history has its own refs)
    twilio = [f for f in probes if f["connection"]["name"] == "Twilio SMS alerts"]
    braze = [f for f in probes if f["connection"]["name"] == "Braze campaigns (US)"]
    assert {(f["category"], f["run"]["httpStatus"]) for f in twilio} == {("SERVER_ERROR", 503)}
    assert "ESCALATED" in {f["escalation"] for f in twilio}
    assert {(f["category"], f["run"]["httpStatus"]) for f in braze} >= {("RATE_LIMITED", 429)}
    assert not [f for f in probes if f["connection"]["name"] == "Deputy rostering (AU)"]


async def test_sandbox_answers_by_scenario_and_wants_credentials(tmp_path: Path) -> None:
    base = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'sandbox.db'}",
        "state_dir": tmp_path / "state",
        "dev_signing_key": "test-signing-key-0123456789abcdef0123456789abcdef",
        "master_key": "test-master-key",
    }
    auth = {"Authorization": "Bearer demo"}
    on = httpx.ASGITransport(app=create_app(Settings(**base, demo_sandbox=True)))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=on, base_url="http://t") as http:
        flaky = [(await http.get("/sandbox/flaky/campaigns/list", headers=auth)) for _ in range(4)]
        assert [r.status_code for r in flaky] == [429, 200, 200, 429]
        assert flaky[0].headers["x-request-id"] == "sandbox-flaky-1"
        assert (await http.get("/sandbox/healthy/api/v1/me")).status_code == 401
        assert (await http.get("/sandbox/healthy/api/v1/me", headers=auth)).json()["ok"] is True
        assert (await http.get("/sandbox/failing/x", headers=auth)).status_code == 503
        assert (await http.get("/sandbox/nope/x", headers=auth)).status_code == 404
    off = httpx.ASGITransport(app=create_app(Settings(**base)))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=off, base_url="http://t") as http:
        assert (await http.get("/sandbox/healthy/api/v1/me", headers=auth)).status_code == 404
