"""The inbound endpoint: constant work before a rejection, unsigned floods in aggregate.

Before: an unknown connection was answered after one lookup, a live one after a vault read,
an HMAC and three inserts (5-20x slower: the timing told which ids exist); 50 unsigned POSTs
wrote 50 deliveries and 50 failures. No wall clock here: the tests show what happens before
the answer (no writes, no vault round trip, one signature check either way).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationFailure, WebhookDelivery
from studio_integrations.rest import inbound as inbound_module
from studio_integrations.rest.inbound import recorder_of
from tests.conftest import TokenFactory
from tests.support.live import LiveServer
from tests.support.rows import row_counts
from tests.webhooks.test_inbound import BODY, make_connection

pytestmark = pytest.mark.backends
UNKNOWN = "/webhooks/inbound/conn_01JD8ZZZZZZZZZZZZZZZZZZZZZ"


async def _failures(server: LiveServer) -> list[IntegrationFailure]:
    async with server.services.db.session(TenantScope.of("acme")) as session:
        return list((await session.execute(select(IntegrationFailure))).scalars())


async def test_unsigned_floods_are_recorded_in_aggregate(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    inbound.server = None  # post() must not wait: the flood is sent as fast as it goes
    unsigned = {"content-type": "application/json"}
    answers = await asyncio.gather(*(inbound.post(BODY, unsigned) for _ in range(50)))
    assert {a.status_code for a in answers} == {401}
    assert {a.content for a in answers} == {b'{"error":"signature verification failed"}'}
    await recorder_of(server.app).drain()
    counts = await row_counts(server.services.db, deliveries=WebhookDelivery)
    assert counts["deliveries"] == 1
    assert len(await _failures(server)) == 1
    # The next window's first unsigned request is recorded with the count of the rest.
    monkeypatch.setattr(inbound_module, "UNSIGNED_WINDOW_SECONDS", 0.0)
    assert (await inbound.post(BODY, unsigned)).status_code == 401
    await recorder_of(server.app).drain()
    messages = sorted(f.message for f in await _failures(server))
    assert len(messages) == 2
    assert "49 more unsigned requests" in messages[1] or "49 more unsigned requests" in messages[0]
    # Signed requests are never throttled: a bad signature is a row of its own.
    bad = inbound.signed(BODY, "msg_bad", secret="whsec_" + "A" * 32)
    assert (await inbound.post(BODY, bad)).status_code == 401
    await recorder_of(server.app).drain()
    assert (await row_counts(server.services.db, deliveries=WebhookDelivery))["deliveries"] == 3


async def test_a_rejection_is_answered_before_anything_is_written(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recording is held until the answer has arrived: were it written before the
    answer (as it was), the answer could not arrive while it is held."""
    inbound = await make_connection(server.app, http, make_token())
    answered = asyncio.Event()
    real = inbound_module._Recording.record

    async def held(recording: Any) -> None:
        await asyncio.wait_for(answered.wait(), 30)  # a guard against a hang, not a measure
        await real(recording)

    monkeypatch.setattr(inbound_module._Recording, "record", held)
    bad = inbound.signed(BODY, "msg_held", secret="whsec_" + "B" * 32)
    response = await http.post(inbound.path, content=BODY, headers=bad)
    assert response.status_code == 401
    assert (await row_counts(server.services.db, deliveries=WebhookDelivery))["deliveries"] == 0
    answered.set()
    await recorder_of(server.app).drain()
    assert (await row_counts(server.services.db, deliveries=WebhookDelivery))["deliveries"] == 1


async def test_live_and_unknown_connections_do_the_same_work_before_answering(
    server: LiveServer,
    http: httpx.AsyncClient,
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    checks: list[str] = []
    vault_reads: list[str] = []
    real_verify = inbound_module.verify
    real_get = server.services.vault.get_secret

    def counting_verify(secret: str, *args: Any, **kwargs: Any) -> Any:
        checks.append("verify")
        return real_verify(secret, *args, **kwargs)

    async def counting_get(name: str, version: str | None = None) -> Any:
        vault_reads.append(name)
        return await real_get(name, version)

    monkeypatch.setattr(inbound_module, "verify", counting_verify)
    monkeypatch.setattr(server.services.vault, "get_secret", counting_get)
    bad = inbound.signed(BODY, "msg_w", secret="whsec_" + "C" * 32)
    first = await http.post(inbound.path, content=BODY, headers=bad)  # fills the secret cache
    await recorder_of(server.app).drain()
    checks.clear()
    vault_reads.clear()
    live = await http.post(inbound.path, content=BODY, headers=bad)
    live_work = (list(checks), list(vault_reads))
    await recorder_of(server.app).drain()
    checks.clear()
    vault_reads.clear()
    unknown = await http.post(UNKNOWN, content=BODY, headers=bad)
    unknown_work = (list(checks), list(vault_reads))
    assert first.status_code == live.status_code == unknown.status_code == 401
    assert live.content == unknown.content
    assert live_work == unknown_work == (["verify"], [])
