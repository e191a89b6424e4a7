"""POST /webhooks/inbound/{connectionId}: signed by the `standardwebhooks` package; valid,
tampered, missing, stale, duplicate, oversized; unknown, foreign and retired connections
answer like a bad signature; every delivery to a live connection is in the log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette

from studio_integrations.core.enums import DeliveryStatus, FailureCategory, SignatureStatus
from studio_integrations.outbound.signing import generate_secret
from studio_integrations.persistence.db import TenantScope
from studio_integrations.persistence.models import IntegrationFailure
from studio_integrations.rest.inbound import recorder_of
from studio_integrations.services import Services
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.connections.conftest import (
    ESTABLISH,
    RETIRE,
    establish_input,
    register_fake_provider,
    register_secret_credential,
)
from tests.fakes.receiver import WebhookReceiver
from tests.support.backends import Backend
from tests.support.live import LiveServer
from tests.webhooks.conftest import (
    DELIVERIES,
    Clock,
    create_subscription,
    deliveries,
    events_of,
    eventually,
    hand_dispatcher,
    ok,
    signing_secret,
)

MAX_BYTES = 4096


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path, webhook_inbound_max_bytes=MAX_BYTES)


@dataclass
class Inbound:
    connection_id: str
    secret: str
    http: httpx.AsyncClient
    app: Starlette | None = None

    @property
    def path(self) -> str:
        return f"/webhooks/inbound/{quote(self.connection_id, safe='')}"

    def signed(
        self, body: bytes, msg_id: str, *, at: datetime | None = None, secret: str | None = None
    ) -> dict[str, str]:
        when = at or datetime.now(UTC)
        signature = Webhook(secret or self.secret).sign(msg_id, when, body.decode())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }

    async def post(self, body: bytes, headers: dict[str, str], path: str | None = None) -> Any:
        response = await self.http.post(path or self.path, content=body, headers=headers)
        if self.app is not None:
            # Rejections are recorded after the answer: wait for those records.
            await recorder_of(self.app).drain()
        return response


async def make_connection(
    app: Starlette, http: httpx.AsyncClient, token: str, *, tenant: str = "acme"
) -> Inbound:
    services: Services = app.state.services
    vault = services.vault
    secret = generate_secret()
    await vault.set_secret(f"{tenant}-inbound", secret, tags={"studio-tenant": tenant})
    provider_id = await register_fake_provider(http, token, "https://api.example.com")
    credential_id = await register_secret_credential(
        http, token, vault, name=f"{tenant}-key", tenant=tenant
    )
    doc = establish_input(
        provider_id,
        credential_id,
        runTest=False,
        inboundSigningSecretRef=f"local://vault/secrets/{tenant}-inbound",
    )
    data = await ok(http, ESTABLISH, {"input": doc}, token)
    assert data["establishConnection"]["userErrors"] == [], data
    return Inbound(data["establishConnection"]["connection"]["id"], secret, http, app)


@pytest.fixture
async def inbound(app: Starlette, http: httpx.AsyncClient, token: str) -> Inbound:
    return await make_connection(app, http, token)


BODY = json.dumps({"type": "timesheet.approved", "data": {"id": 42}}).encode()


async def test_a_standard_webhooks_signature_is_accepted_and_recorded_valid(
    services: Services, http: httpx.AsyncClient, token: str, inbound: Inbound
) -> None:
    response = await inbound.post(BODY, inbound.signed(BODY, "msg_1"))
    assert response.status_code == 200, response.text
    delivery_id = response.json()["deliveryId"]
    data = await ok(http, DELIVERIES, {"filter": {"direction": "INBOUND"}}, token)
    [node] = data["webhookDeliveries"]["nodes"]
    assert node["id"] == delivery_id
    assert node["status"] == "SUCCEEDED"
    assert node["signatureStatus"] == "VALID"
    assert node["messageId"] == "msg_1"
    assert node["eventType"] == "timesheet.approved"
    assert node["connectionId"] == inbound.connection_id
    assert node["payload"] == {"type": "timesheet.approved", "data": {"id": 42}}
    assert [a["httpStatus"] for a in node["attempts"]] == [200]
    [event] = await events_of(services, "InboundWebhookReceived")
    assert event.subject_id == delivery_id
    assert event.actor_kind.value == "SERVICE"
    assert event.actor_subject == inbound.connection_id
    assert event.data["payload"] == {"type": "timesheet.approved", "data": {"id": 42}}
    assert inbound.secret not in json.dumps(event.data)


async def test_nul_characters_in_a_signed_body_are_recorded_not_a_crash(
    services: Services, http: httpx.AsyncClient, token: str, inbound: Inbound
) -> None:
    """PostgreSQL stores U+0000 in neither text nor jsonb: a body holding one (escaped in
    JSON, or a raw byte) is verified on its bytes, accepted, and recorded with U+FFFD."""
    escaped = b'{"type": "a\\u0000b", "data": "x\\u0000"}'
    raw = b'{"type": "ok", "data": "\x00"}'
    for msg_id, body in (("msg_nul_escaped", escaped), ("msg_nul_raw", raw)):
        response = await inbound.post(body, inbound.signed(body, msg_id))
        assert response.status_code == 200, response.text
    data = await ok(http, DELIVERIES, {"filter": {"direction": "INBOUND"}}, token)
    nodes = {n["messageId"]: n for n in data["webhookDeliveries"]["nodes"]}
    assert nodes["msg_nul_escaped"]["signatureStatus"] == "VALID"
    assert nodes["msg_nul_escaped"]["eventType"] == "a\ufffdb"
    assert nodes["msg_nul_raw"]["signatureStatus"] == "VALID"
    events = await events_of(services, "InboundWebhookReceived")
    assert len(events) == 2
    assert all("\x00" not in json.dumps(e.data) for e in events)


async def test_a_deeply_nested_body_is_recorded_not_a_crash(
    services: Services, http: httpx.AsyncClient, token: str, inbound: Inbound
) -> None:
    """JSON nested past the parser's recursion limit is kept as text, signed or not."""
    body = b"[" * 2000 + b"]" * 2000
    unsigned = await inbound.post(body, {"content-type": "application/json"})
    assert unsigned.status_code == 401, unsigned.text
    signed = await inbound.post(body, inbound.signed(body, "msg_deep"))
    assert signed.status_code == 200, signed.text
    [event] = await events_of(services, "InboundWebhookReceived")
    assert event.data["eventType"] == "unknown"
    assert event.data["payload"] == body.decode()


async def test_tampered_missing_and_stale_are_rejected_and_recorded(
    services: Services, http: httpx.AsyncClient, token: str, inbound: Inbound
) -> None:
    tampered = await inbound.post(BODY.replace(b"42", b"43"), inbound.signed(BODY, "msg_t"))
    wrong_key = await inbound.post(BODY, inbound.signed(BODY, "msg_k", secret=generate_secret()))
    missing = await inbound.post(BODY, {"content-type": "application/json"})
    stale = await inbound.post(
        BODY, inbound.signed(BODY, "msg_s", at=datetime.now(UTC) - timedelta(minutes=6))
    )
    future = await inbound.post(
        BODY, inbound.signed(BODY, "msg_f", at=datetime.now(UTC) + timedelta(minutes=6))
    )
    for response in (tampered, wrong_key, missing, stale, future):
        assert response.status_code == 401
        assert response.json() == {"error": "signature verification failed"}
    rows = await deliveries(services, connection_id=inbound.connection_id)
    assert len(rows) == 5
    assert {r.status for r in rows} == {DeliveryStatus.FAILED}
    by_message = {r.message_id: r.signature_status for r in rows if r.message_id.startswith("msg")}
    assert by_message == {
        "msg_t": SignatureStatus.INVALID,
        "msg_k": SignatureStatus.INVALID,
        "msg_s": SignatureStatus.INVALID,
        "msg_f": SignatureStatus.INVALID,
    }
    assert [r.signature_status for r in rows if not r.message_id.startswith("msg")] == [
        SignatureStatus.MISSING
    ]
    # The log filters by signature status; nothing was emitted as received.
    data = await ok(
        http, DELIVERIES, {"filter": {"direction": "INBOUND", "signatureStatus": "MISSING"}}, token
    )
    assert len(data["webhookDeliveries"]["nodes"]) == 1
    data = await ok(
        http,
        DELIVERIES,
        {"filter": {"connectionId": inbound.connection_id, "signatureStatus": "INVALID"}},
        token,
    )
    assert len(data["webhookDeliveries"]["nodes"]) == 4
    assert await events_of(services, "InboundWebhookReceived") == []
    async with services.db.session(TenantScope.of("acme")) as session:
        failures = list((await session.execute(select(IntegrationFailure))).scalars())
    assert len(failures) == 5
    assert {f.category for f in failures} == {FailureCategory.SIGNATURE}


async def test_a_replayed_message_id_is_accepted_once(
    services: Services, http: httpx.AsyncClient, token: str, inbound: Inbound
) -> None:
    headers = inbound.signed(BODY, "msg_dup")
    first = await inbound.post(BODY, headers)
    second = await inbound.post(BODY, headers)
    resent = await inbound.post(BODY, inbound.signed(BODY, "msg_dup"))  # re-signed retry
    assert first.status_code == second.status_code == resent.status_code == 200
    assert first.json()["status"] == "accepted"
    assert (
        second.json()
        == resent.json()
        == {
            "status": "duplicate",
            "deliveryId": first.json()["deliveryId"],
        }
    )
    rows = await deliveries(services, connection_id=inbound.connection_id)
    assert len(rows) == 1
    assert len(await events_of(services, "InboundWebhookReceived")) == 1
    data = await ok(http, DELIVERIES, {"filter": {"search": "msg_dup"}}, token)
    assert [n["id"] for n in data["webhookDeliveries"]["nodes"]] == [first.json()["deliveryId"]]


async def test_an_oversized_body_is_refused_unread(services: Services, inbound: Inbound) -> None:
    big = json.dumps({"type": "x", "pad": "y" * MAX_BYTES}).encode()
    response = await inbound.post(big, inbound.signed(big, "msg_big"))
    assert response.status_code == 413
    [row] = await deliveries(services, connection_id=inbound.connection_id)
    assert row.status is DeliveryStatus.FAILED
    assert row.signature_status is SignatureStatus.INVALID  # signed, but never verified
    assert row.payload == ""
    # Unknown connection, oversized: the same 413 (no hint whether the id exists).
    response = await inbound.post(big, {}, path="/webhooks/inbound/conn_01JD8ZZZZZZZZZZZZZZZZZZZZZ")
    assert response.status_code == 413


async def test_unknown_foreign_and_retired_connections_answer_like_a_bad_signature(
    server: LiveServer,
    http: httpx.AsyncClient,
    token: str,
    make_token: TokenFactory,
    inbound: Inbound,
) -> None:
    globex = await make_connection(server.app, http, make_token(tenant="globex"), tenant="globex")
    bad = await inbound.post(BODY.replace(b"42", b"0"), inbound.signed(BODY, "msg_bad"))
    unknown = await inbound.post(
        BODY, inbound.signed(BODY, "m1"), path="/webhooks/inbound/conn_01JD8ZZZZZZZZZZZZZZZZZZZZZ"
    )
    garbage = await inbound.post(BODY, inbound.signed(BODY, "m2"), path="/webhooks/inbound/x")
    # Signed with acme's secret but sent to globex's connection.
    foreign = await inbound.post(BODY, inbound.signed(BODY, "m3"), path=globex.path)
    for response in (unknown, garbage, foreign):
        assert response.status_code == bad.status_code == 401
        assert response.content == bad.content
    # A retired connection refuses even a valid signature, alike.
    data = await ok(
        http, RETIRE, {"id": inbound.connection_id, "confirmName": "HR production"}, token
    )
    assert data["retireConnection"]["userErrors"] == []
    retired = await inbound.post(BODY, inbound.signed(BODY, "m4"))
    assert retired.status_code == 401
    assert retired.content == bad.content
    # Nothing of this reached acme's log beyond its own bad delivery.
    rows = await deliveries(server.services, connection_id=inbound.connection_id)
    assert [r.message_id for r in rows] == ["msg_bad"]


async def test_an_accepted_inbound_webhook_feeds_outbound_subscriptions(
    services: Services,
    http: httpx.AsyncClient,
    token: str,
    inbound: Inbound,
    receiver: WebhookReceiver,
) -> None:
    await services.webhook_dispatcher.stop()
    sub = await create_subscription(http, token, receiver.url, eventType="InboundWebhookReceived")
    response = await inbound.post(BODY, inbound.signed(BODY, "msg_fwd"))
    assert response.status_code == 200

    async def fanned() -> list[Any] | None:
        return await deliveries(services, subscription_id=sub["id"]) or None

    await eventually(fanned, what="the fan-out of InboundWebhookReceived")
    assert await hand_dispatcher(services, Clock()).dispatch_once() == 1
    [seen] = receiver.received
    secret = await signing_secret(services, sub, sub["signingSecretVersion"])
    body = Webhook(secret).verify(seen.body, seen.headers)
    assert body["type"] == "InboundWebhookReceived"
    assert body["data"]["deliveryId"] == response.json()["deliveryId"]
    assert body["data"]["payload"] == {"type": "timesheet.approved", "data": {"id": 42}}
