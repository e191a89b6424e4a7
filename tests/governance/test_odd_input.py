"""Odd input gets a clear 4xx or field error with a code, never a 500 or a dropped socket.

Each class here was a 500 or a crash before (several without a token): inbound timestamps
of other scripts' digits or thousands of digits, a signed inbound body with a lone
surrogate, lone surrogates in GraphQL variables and literals, crafted keyset cursors,
``exp`` out of range or a string, a tenant claim with control characters, a WebSocket frame
nested 200k deep, a 3 MB header, and schema hints with introspection off.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import websockets
from standardwebhooks.webhooks import Webhook
from websockets.exceptions import ConnectionClosed

from studio_integrations.schema.extensions import MAX_TOKENS
from studio_integrations.settings import Settings
from tests.conftest import TEST_SIGNING_KEY, TokenFactory
from tests.governance.conftest import ServerFactory, client
from tests.support.graphql import error_codes, gql
from tests.support.live import LiveServer
from tests.support.ws import init, ws_connect
from tests.webhooks.test_inbound import BODY, make_connection

pytestmark = pytest.mark.backends


# --- inbound webhooks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "\u0661\u0667\u0669\u0666\u0660\u0660\u0660\u0660\u0660\u0660",
        "\u00b2",
        "1" * 5000,
        "\uff11\uff17\uff19\uff16\uff10\uff10\uff10\uff10\uff10",
        "-1",
        "1e9",
        "1796000000.5",
    ],
    ids=["arabic-indic", "superscript", "5000-digits", "fullwidth", "negative", "exp", "fraction"],
)
async def test_inbound_timestamps_that_are_not_ascii_digits_are_rejected(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory, timestamp: str
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    headers = inbound.signed(BODY, "msg_ts")
    headers["webhook-timestamp"] = timestamp
    response = await http.post(
        inbound.path, content=BODY, headers={k: v.encode() for k, v in headers.items()}
    )
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "signature verification failed"}


async def _raw_post(server: LiveServer, path: str, headers: list[tuple[str, str]]) -> int:
    """The status of a POST written byte by byte (clients refuse to send such headers)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = [f"POST {path} HTTP/1.1", f"Host: {server.host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + BODY)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_a_content_length_of_other_digits_is_not_a_500(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    for path, extra in (
        (inbound.path, []),
        ("/graphql", [("Authorization", f"Bearer {make_token()}")]),
    ):
        headers = [("Content-Length", "\u00b2"), ("Content-Type", "application/json"), *extra]
        assert await _raw_post(server, path, headers) < 500


async def test_a_signed_inbound_body_with_a_lone_surrogate_is_kept_as_text(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    inbound = await make_connection(server.app, http, make_token())
    body = b'{"type": "odd\\ud800", "data": {"name": "\\udfff"}}'
    when = datetime.now(UTC)
    signature = Webhook(inbound.secret).sign("msg_sur", when, body.decode())
    headers = {
        "webhook-id": "msg_sur",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    response = await http.post(inbound.path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    deliveries = await gql(
        http,
        "{ webhookDeliveries(filter: {direction: INBOUND}) { nodes { payload signatureStatus } } }",
        token=make_token(),
    )
    [node] = deliveries["data"]["webhookDeliveries"]["nodes"]
    assert node["signatureStatus"] == "VALID"
    assert node["payload"] == json.loads(body)
    # The event keeps the body as text (its strings are not text anywhere it is stored).
    audit = await gql(
        http,
        '{ auditEvents(filter: {types: ["InboundWebhookReceived"]}) { nodes { data } } }',
        token=make_token(),
    )
    [event] = audit["data"]["auditEvents"]["nodes"]
    assert event["data"]["payload"] == body.decode()
    assert event["data"]["eventType"] == "unknown"


# --- GraphQL ----------------------------------------------------------------------------

REGISTER = """
mutation ($input: RegisterProviderInput!) {
  registerProvider(input: $input) { provider { id } userErrors { field code } }
}
"""


@pytest.mark.parametrize(
    "raw_variables",
    [
        '{"input": {"key": "x\\ud800", "name": "n"}}',
        '{"input": {"name": "\\udfff"}}',
        '{"\\ud83d": 1}',
        '{"input": {"configurationSchema": {"k": ["\\ud83d\\ud83d"]}}}',
    ],
)
async def test_lone_surrogates_in_variables_are_refused(
    http: httpx.AsyncClient, make_token: TokenFactory, raw_variables: str
) -> None:
    body = '{"query": ' + json.dumps(REGISTER) + ', "variables": ' + raw_variables + "}"
    response = await http.post(
        "/graphql",
        content=body.encode(),
        headers={"Authorization": f"Bearer {make_token()}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert error_codes(response.json()) == ["INVALID_UNICODE"]


async def test_a_paired_surrogate_escape_is_text(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    body = '{"query": "query ($x: String) { viewer { subject } }", "variables": {"x": "\\ud83d\\ude00"}}'
    response = await http.post(
        "/graphql",
        content=body.encode(),
        headers={"Authorization": f"Bearer {make_token()}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def test_a_lone_surrogate_in_a_document_literal_is_a_parse_error(
    http: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    document = '{ providers(filter: {search: "\\ud800"}) { nodes { id } } }'
    body = await gql(http, document, token=make_token())
    assert error_codes(body) == ["GRAPHQL_PARSE_FAILED"]


def _keyset(raw: str) -> str:
    return base64.urlsafe_b64encode(f"k:{raw}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _keyset("[" * 100_000),
        _keyset("[" * 1_100),
        _keyset('["\\ud800", "conn_1"]'),
        _keyset('["a\\u0000", "conn_1"]'),
        _keyset('[["a"], "conn_1"]'),
        "x" * 100_000,
    ],
    ids=["deep-100k", "deep-1100", "surrogate", "nul", "not-a-string", "long"],
)
async def test_crafted_keyset_cursors_are_invalid_cursor(
    http: httpx.AsyncClient, make_token: TokenFactory, cursor: str
) -> None:
    document = (
        "query ($after: String) { integrationConnections(orderBy: {field: NAME}, after: $after) "
        "{ nodes { id } } }"
    )
    response = await http.post(
        "/graphql",
        json={"query": document, "variables": {"after": cursor}},
        headers={"Authorization": f"Bearer {make_token()}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None or body["data"]["integrationConnections"] is None
    assert error_codes(body) == ["INVALID_CURSOR"]


# --- tokens -------------------------------------------------------------------------------


def _token(settings: Settings, **claims: Any) -> str:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "sub": "alice",
        "tid": "acme",
        "scp": "connections:read health:read",
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    body.update(claims)
    return jwt.encode(body, TEST_SIGNING_KEY, algorithm="HS256")


def _raw_token(settings: Settings, payload: str) -> str:
    """A token whose payload is given as JSON text (for numbers json.dumps cannot write)."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=")
    signing_input = header + b"." + body
    import hashlib
    import hmac

    signature = hmac.new(TEST_SIGNING_KEY.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


BAD_CLAIMS: list[dict[str, Any]] = [
    {"exp": "99999999999"},
    {"exp": 1e300},
    {"exp": 10**30},
    {"exp": True},
    {"tid": "ac\x00me"},
    {"tid": "ac\nme"},
    {"tid": "acme\x85"},
    {"tid": "t" * 101},
    {"sub": "al\x00ice"},
]


@pytest.mark.parametrize("claims", BAD_CLAIMS, ids=[repr(c)[:30] for c in BAD_CLAIMS])
async def test_odd_claims_are_401(
    http: httpx.AsyncClient, settings: Settings, claims: dict[str, Any]
) -> None:
    response = await http.post(
        "/graphql",
        json={"query": "{ viewer { subject } }"},
        headers={"Authorization": f"Bearer {_token(settings, **claims)}"},
    )
    assert response.status_code == 401, response.text
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]


async def test_an_infinite_exp_is_401(http: httpx.AsyncClient, settings: Settings) -> None:
    payload = (
        f'{{"sub":"alice","tid":"acme","iss":"{settings.token_issuer}",'
        f'"aud":"{settings.token_audience}","exp":1e400}}'
    )
    response = await http.post(
        "/graphql",
        json={"query": "{ viewer { subject } }"},
        headers={"Authorization": f"Bearer {_raw_token(settings, payload)}"},
    )
    assert response.status_code == 401, response.text


async def test_a_string_exp_never_opens_a_websocket(server: LiveServer, settings: Settings) -> None:
    """A string ``exp`` was accepted and left the socket without an expiry."""
    async with ws_connect(server.ws_url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await init(ws, _token(settings, exp="99999999999"))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


# --- WebSocket frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "subscribe", "id": "1", "payload": ' + "[" * 200_000 + "]" * 200_000 + "}",
        '{"type": "subscribe", "id": "1", "payload": {"query": "{ viewer { subject } }", '
        '"variables": {"x": "\\ud800"}}}',
        "NaN",
        "1e999",
        "[]",
        '"connection_init"',
    ],
    ids=["nested-200k", "lone-surrogate", "nan", "overflow", "array", "string"],
)
async def test_hostile_frames_close_the_socket_with_4400(
    server: LiveServer, make_token: TokenFactory, frame: str
) -> None:
    async with ws_connect(server.ws_url, max_size=None) as ws:
        assert (await init(ws, make_token()))["type"] == "connection_ack"
        await ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    # The server is unharmed.
    async with ws_connect(server.ws_url) as ws:
        assert (await init(ws, make_token()))["type"] == "connection_ack"


# --- headers and hints ------------------------------------------------------------------------


async def test_a_huge_header_is_431(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    async with limited_server(max_header_bytes=8192) as server, client(server) as http:
        huge = "Bearer " + "x" * 3 * 1024 * 1024
        response = await http.post(
            "/graphql", json={"query": "{ viewer { subject } }"}, headers={"Authorization": huge}
        )
        assert response.status_code == 431
        assert error_codes(response.json()) == ["HEADERS_TOO_LARGE"]
        response = await http.post(
            "/webhooks/inbound/conn_x", content=b"{}", headers={"X-Padding": "y" * 9000}
        )
        assert response.status_code == 431
        fine = await gql(http, "{ viewer { subject } }", token=make_token())
        assert fine["data"] == {"viewer": {"subject": "alice"}}


@pytest.mark.parametrize(
    "document",
    [
        "{ credential { id } }",
        "{ credentials(first: 1) { nodes { keyVaultRf } } }",
        "{ credentials(frist: 1) { nodes { id } } }",
        "{ credentials(filter: {authMode: API_KE}) { nodes { id } } }",
    ],
)
async def test_no_schema_hints_when_introspection_is_off(
    limited_server: ServerFactory, http: httpx.AsyncClient, make_token: TokenFactory, document: str
) -> None:
    hinted = await gql(http, document, token=make_token())
    assert "Did you mean" in json.dumps(hinted)  # development: hints help
    async with limited_server(introspection=False) as server, client(server) as quiet:
        body = await gql(quiet, document, token=make_token())
        assert body["errors"] and "Did you mean" not in json.dumps(body), body
        assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"] * len(body["errors"])


async def test_an_empty_subscription_document_is_a_bad_request(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """An empty document over WebSocket was answered "Unexpected error." (a masked 500)."""
    async with ws_connect(server.ws_url) as ws:
        assert (await init(ws, make_token()))["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": ""}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "error", message
    codes = [e["extensions"]["code"] for e in message["payload"]]
    assert codes == ["BAD_REQUEST"], message  # as over HTTP


@pytest.mark.parametrize("document", ["   ", "\n\t ", "# only a comment", "subscription {"])
async def test_a_subscription_document_with_a_syntax_error_closes_with_4400(
    server: LiveServer, make_token: TokenFactory, document: str
) -> None:
    """Strawberry's answer to a Subscribe it cannot parse, as graphql-ws does: close 4400
    with the syntax error. Strawberry let the parser extension's error escape the stream
    instead, and the socket got a bare ``complete`` with the error logged as unexpected."""
    async with ws_connect(server.ws_url) as ws:
        assert (await init(ws, make_token()))["type"] == "connection_ack"
        payload = {"query": document}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        with pytest.raises(ConnectionClosed):
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert message["type"] != "complete", message
    assert ws.close_code == 4400
    assert ws.close_reason.startswith("Syntax Error:"), ws.close_reason


async def test_a_subscription_document_over_the_token_limit_gets_its_error(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """The parse error escaped Strawberry's stream: the socket got a bare ``complete`` and
    the error went to the log as an unexpected one."""
    document = "subscription { auditEvents { id " + "type " * MAX_TOKENS + "} }"
    async with ws_connect(server.ws_url) as ws:
        assert (await init(ws, make_token()))["type"] == "connection_ack"
        payload = {"query": document}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "error", message
    (error,) = message["payload"]
    assert "tokens" in error["message"] and error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
