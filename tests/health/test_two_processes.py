"""Two app servers over one PostgreSQL and one Redis: a subscriber on server A receives the
health changes server B's prober detects, and once A is gone B probes everything."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.fakes.provider import Reply
from tests.health.conftest import VERIFY_PATH, World, establish
from tests.support.backends import Backend
from tests.support.gqlws import subscribe
from tests.support.live import LiveServer, serve

HEALTH_CHANGED = """
subscription ($connectionId: ID) {
  healthChanged(connectionId: $connectionId) { connectionId previousStatus status }
}
"""


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    if backend.name != "postgres":
        pytest.skip("two processes need a shared bus (redis://), not memory://")
    return make_settings(backend, tmp_path, probe_interval_seconds=0.2)


async def test_a_subscriber_on_one_server_sees_what_the_other_probes(
    server: LiveServer,
    settings: Settings,
    http: httpx.AsyncClient,
    world: World,
    make_token: TokenFactory,
) -> None:
    a = server  # runs no prober: only B probes, and its detections must reach A
    assert a.services.health_prober is not None
    with_prober = settings.model_copy(update={"workers": frozenset({"relay", "prober"})})
    async with serve(create_app(with_prober)) as b:
        assert b.services.health_prober is not None
        connection_id = await establish(http, world)
        async with subscribe(
            a.ws_url,
            world.token,
            HEALTH_CHANGED,
            {"connectionId": connection_id},
            live=a.services.live_subscribers,
            tenant_id="acme",
        ) as on_a:
            world.fake.on(VERIFY_PATH, Reply(500))
            change = (await on_a.next(timeout=15))["healthChanged"]
            assert change == {
                "connectionId": connection_id,
                "previousStatus": "HEALTHY",
                "status": "DEGRADED",
            }
        assert b.services.health_prober.probed > 0
        assert a.services.health_prober.probed == 0
