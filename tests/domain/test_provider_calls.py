"""Provider calls against a fake provider on loopback: auth modes as the server sees them,
OAuth tokens, retries, classification, templates and secrets kept out of everything."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from studio_integrations.core.enums import AuthMode, FailureCategory
from studio_integrations.outbound.provider_calls import (
    AuthScheme,
    ConfigurationInvalid,
    ProviderRequest,
    classify,
    render_url,
)
from tests.domain.conftest import (
    CallerFactory,
    CountingResolver,
    FakeClock,
    RecordingSleep,
    credential,
)
from tests.fakes.provider import FakeProvider, Reply, basic_credentials, unused_port

OK = Reply(json={"ok": True})


def probe(provider: FakeProvider, path: str = "/v1/me", **options: object) -> ProviderRequest:
    return ProviderRequest(base_url=provider.base_url, path=path, **options)  # type: ignore[arg-type]


# --- Auth modes, as the provider sees them --------------------------------------------------


async def test_api_key_header_default(provider: FakeProvider, make_caller: CallerFactory) -> None:
    provider.on("/v1/me", OK)
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "key-123\n"))
    assert outcome.ok, outcome
    seen = provider.seen("/v1/me")[0]
    assert seen.headers["x-api-key"] == "key-123"
    assert "authorization" not in seen.headers
    assert seen.query == []


async def test_api_key_with_a_prefix_in_authorization(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    # MessageBird: "Authorization: AccessKey <key>".
    provider.on("/balance", OK)
    scheme = AuthScheme(api_key_names=("Authorization",), api_key_prefix="AccessKey")
    outcome = await make_caller().call(
        probe(provider, "/balance", auth=scheme), credential(AuthMode.API_KEY, "live_abc")
    )
    assert outcome.ok
    assert provider.seen("/balance")[0].headers["authorization"] == "AccessKey live_abc"


async def test_api_key_as_query_parameters(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    # Vonage: api_key and api_secret in the query; the secret is a JSON object of both.
    provider.on("/account/get-balance", OK)
    scheme = AuthScheme(api_key_in="query", api_key_names=("api_key", "api_secret"))
    secret = json.dumps({"api_key": "a1b2c3", "api_secret": "s&e=c r/t"})
    outcome = await make_caller().call(
        probe(provider, "/account/get-balance", auth=scheme, params={"fmt": "json"}),
        credential(AuthMode.API_KEY, secret),
    )
    assert outcome.ok, outcome
    seen = provider.seen("/account/get-balance")[0]
    assert seen.params == {"fmt": "json", "api_key": "a1b2c3", "api_secret": "s&e=c r/t"}
    assert "authorization" not in seen.headers


async def test_bearer_token(provider: FakeProvider, make_caller: CallerFactory) -> None:
    provider.on("/api/v1/me", OK)
    outcome = await make_caller().call(
        probe(provider, "/api/v1/me"), credential(AuthMode.BEARER_TOKEN, "tok.abc-123")
    )
    assert outcome.ok
    assert provider.seen("/api/v1/me")[0].headers["authorization"] == "Bearer tok.abc-123"


async def test_bearer_token_with_a_custom_header_and_prefix(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.on("/me", OK)
    scheme = AuthScheme(bearer_header="X-Auth", bearer_prefix="OAuth")
    await make_caller().call(
        probe(provider, "/me", auth=scheme), credential(AuthMode.BEARER_TOKEN, "t0k")
    )
    assert provider.seen("/me")[0].headers["x-auth"] == "OAuth t0k"


@pytest.mark.parametrize(
    ("secret", "user", "password"),
    [
        ("ACabc:tok:with:colons", "ACabc", "tok:with:colons"),
        (json.dumps({"username": "ACabc", "password": "pä ss"}), "ACabc", "pä ss"),
    ],
)
async def test_basic(
    provider: FakeProvider, make_caller: CallerFactory, secret: str, user: str, password: str
) -> None:
    request = ProviderRequest(
        base_url=provider.base_url + "/2010-04-01",
        path="/Accounts/{accountSid}.json",
        configuration={"accountSid": "ACabc"},
    )
    provider.on("/2010-04-01/Accounts/ACabc.json", OK)
    outcome = await make_caller().call(request, credential(AuthMode.BASIC, secret))
    assert outcome.ok, outcome
    seen = provider.seen("/2010-04-01/Accounts/ACabc.json")[0]
    assert basic_credentials(seen.headers["authorization"]) == (user, password)


@pytest.mark.parametrize(
    ("mode", "secret", "expected"),
    [
        (AuthMode.BASIC, "no-colon-here", "username:password"),
        (AuthMode.BASIC, '{"username": "u"}', "username:password"),
        (AuthMode.API_KEY, "   ", "the key"),
        (AuthMode.BEARER_TOKEN, "tok\r\nX-Evil: 1", "HTTP header"),
        (AuthMode.OAUTH2_CLIENT_CREDENTIALS, "client:secret", "client_id"),
        (AuthMode.OAUTH2_CLIENT_CREDENTIALS, '{"client_id": "c"}', "client_id"),
    ],
)
async def test_malformed_secrets_are_configuration_failures_without_the_value(
    provider: FakeProvider, make_caller: CallerFactory, mode: AuthMode, secret: str, expected: str
) -> None:
    provider.on("/v1/me", OK)
    outcome = await make_caller().call(
        probe(provider, auth=AuthScheme(token_url="/oauth/token")), credential(mode, secret)
    )
    assert not outcome.ok
    assert outcome.category is FailureCategory.CONFIGURATION
    assert outcome.attempts == ()
    assert expected in (outcome.message or "")
    if secret.strip():
        assert secret.strip() not in (outcome.message or "")
    assert provider.requests == []


async def test_query_api_key_secret_must_name_every_parameter(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    scheme = AuthScheme(api_key_in="query", api_key_names=("api_key", "api_secret"))
    outcome = await make_caller().call(
        probe(provider, auth=scheme), credential(AuthMode.API_KEY, '{"api_key": "only-one"}')
    )
    assert outcome.category is FailureCategory.CONFIGURATION
    assert "api_key, api_secret" in (outcome.message or "")
    assert provider.requests == []


# --- OAuth2 client credentials ---------------------------------------------------------


OAUTH_SECRET = json.dumps({"client_id": "client-1", "client_secret": "s3cret/+="})


async def test_oauth_token_is_fetched_cached_and_sent_as_bearer(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    oauth = provider.enable_oauth("client-1", "s3cret/+=", scope="read:all")
    provider.on("/v1/me", OK)
    provider.protect("/v1/me")
    caller = make_caller()
    request = probe(provider, auth=AuthScheme(token_url="/oauth/token", scope="read:all"))
    cred = credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    for _ in range(3):
        outcome = await caller.call(request, cred)
        assert outcome.ok, outcome
    assert provider.tokens_issued == 1
    token_request = provider.seen("/oauth/token")[0]
    assert basic_credentials(token_request.headers["authorization"]) == (
        "client-1",
        "s3cret%2F%2B%3D",  # RFC 6749 §2.3.1: form-encoded before Basic encoding
    )
    assert token_request.body == b"grant_type=client_credentials&scope=read%3Aall"
    tokens = {r.headers["authorization"] for r in provider.seen("/v1/me")}
    assert tokens == {f"Bearer {next(iter(oauth.tokens))}"}


async def test_oauth_client_secret_in_the_body_and_token_url_from_configuration(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=", token_path="/auth/token", client_auth="body")
    provider.on("/v1/me", OK)
    provider.protect("/v1/me")
    request = probe(
        provider,
        auth=AuthScheme(token_client_auth="body"),
        configuration={"tokenUrl": provider.base_url + "/auth/token"},
    )
    outcome = await make_caller().call(
        request, credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    )
    assert outcome.ok, outcome
    token_request = provider.seen("/auth/token")[0]
    assert "authorization" not in token_request.headers
    assert dict(pair.split("=", 1) for pair in token_request.body.decode().split("&")) == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": "s3cret%2F%2B%3D",
    }


async def test_oauth_token_refreshed_shortly_before_expiry(
    provider: FakeProvider, make_caller: CallerFactory, clock: FakeClock
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=", expires_in=100)
    provider.on("/v1/me", OK)
    provider.protect("/v1/me")
    caller = make_caller(clock=clock)
    request = probe(provider, auth=AuthScheme(token_url="/oauth/token"))
    cred = credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    assert (await caller.call(request, cred)).ok
    clock.advance(85)  # within the lifetime less its 10 % margin
    assert (await caller.call(request, cred)).ok
    assert provider.tokens_issued == 1
    clock.advance(6)  # past 90 s: refreshed ahead of the server's expiry
    assert (await caller.call(request, cred)).ok
    assert provider.tokens_issued == 2


async def test_oauth_cache_is_per_secret_version(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=")
    provider.on("/v1/me", OK)
    caller = make_caller()
    request = probe(provider, auth=AuthScheme(token_url="/oauth/token"))
    for version in ("v1", "v2", "v1"):
        cred = credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET, version=version)
        assert (await caller.call(request, cred)).ok
    assert provider.tokens_issued == 2


async def test_oauth_refreshes_once_on_a_401(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=")
    provider.on("/v1/me", OK)
    provider.protect("/v1/me")
    caller = make_caller()
    request = probe(provider, auth=AuthScheme(token_url="/oauth/token"), max_attempts=1)
    cred = credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    assert (await caller.call(request, cred)).ok
    provider.revoke_tokens()  # the provider forgets the cached token
    outcome = await caller.call(request, cred)
    assert outcome.ok, outcome
    assert [(a.http_status, a.category) for a in outcome.attempts] == [
        (401, FailureCategory.AUTHENTICATION),
        (200, None),
    ]
    assert provider.tokens_issued == 2


async def test_oauth_401_to_a_fresh_token_is_not_retried(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=")
    provider.on("/v1/me", Reply(status=401))
    outcome = await make_caller().call(
        probe(provider, auth=AuthScheme(token_url="/oauth/token")),
        credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET),
    )
    assert outcome.category is FailureCategory.AUTHENTICATION
    assert len(outcome.attempts) == 1
    assert provider.tokens_issued == 1


async def test_oauth_wrong_client_secret_is_authentication_and_no_api_request(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "the-right-one")
    provider.on("/v1/me", OK)
    outcome = await make_caller().call(
        probe(provider, auth=AuthScheme(token_url="/oauth/token")),
        credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET),
    )
    assert outcome.category is FailureCategory.AUTHENTICATION
    assert outcome.status == 401
    assert "invalid_client" in (outcome.message or "")
    assert len(outcome.attempts) == 1  # a 401 is not retried
    assert provider.seen("/v1/me") == []


async def test_concurrent_calls_share_one_token_fetch(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=")
    provider.on("/v1/me", OK)
    caller = make_caller()
    request = probe(provider, auth=AuthScheme(token_url="/oauth/token"))
    cred = credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    outcomes = await asyncio.gather(*(caller.call(request, cred) for _ in range(5)))
    assert all(o.ok for o in outcomes)
    assert provider.tokens_issued == 1


async def test_oauth_needs_a_token_url(provider: FakeProvider, make_caller: CallerFactory) -> None:
    outcome = await make_caller().call(
        probe(provider), credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    )
    assert outcome.category is FailureCategory.CONFIGURATION
    assert "token URL" in (outcome.message or "")
    assert provider.requests == []


# --- Retries -----------------------------------------------------------------------------


async def test_retries_503_with_backoff_then_succeeds(
    provider: FakeProvider, make_caller: CallerFactory, sleeps: RecordingSleep
) -> None:
    provider.on(
        "/v1/me",
        Reply(status=503, headers={"X-Request-Id": "r1"}),
        Reply(status=503, headers={"X-Request-Id": "r2"}),
        Reply(json={"ok": True}, headers={"X-Request-Id": "r3"}),
    )
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.ok
    assert outcome.status == 200
    assert outcome.external_ref == "r3"
    assert [a.number for a in outcome.attempts] == [1, 2, 3]
    assert [a.http_status for a in outcome.attempts] == [503, 503, 200]
    assert [a.category for a in outcome.attempts] == [
        FailureCategory.SERVER_ERROR,
        FailureCategory.SERVER_ERROR,
        None,
    ]
    assert [a.external_ref for a in outcome.attempts] == ["r1", "r2", "r3"]
    assert all(a.latency_ms > 0 and a.address == "127.0.0.1" for a in outcome.attempts)
    assert outcome.attempts[0].started_at < outcome.attempts[1].started_at
    assert outcome.attempts[0].message == "expected HTTP 200, got HTTP 503 Service Unavailable"
    # Exponential back-off with jitter from the upper half: base 0.01, then 0.02.
    first, second = sleeps.waits
    assert 0.005 <= first <= 0.01
    assert 0.01 <= second <= 0.02
    assert len(provider.seen("/v1/me")) == 3


async def test_gives_up_after_max_attempts(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.on("/v1/me", Reply(status=502))
    outcome = await make_caller().call(
        probe(provider, max_attempts=2), credential(AuthMode.API_KEY, "k")
    )
    assert not outcome.ok
    assert outcome.category is FailureCategory.SERVER_ERROR
    assert outcome.status == 502
    assert len(outcome.attempts) == 2


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("7", 7.0), ("0", 0.0)],
)
async def test_retry_after_is_honoured(
    provider: FakeProvider,
    make_caller: CallerFactory,
    sleeps: RecordingSleep,
    retry_after: str,
    expected_wait: float,
) -> None:
    provider.on("/v1/me", Reply(status=429, headers={"Retry-After": retry_after}), OK)
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.ok
    assert [a.category for a in outcome.attempts] == [FailureCategory.RATE_LIMITED, None]
    assert sleeps.waits == [expected_wait]


async def test_retry_after_as_http_date(
    provider: FakeProvider, make_caller: CallerFactory, sleeps: RecordingSleep
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
    provider.on("/v1/me", Reply(status=503, headers={"Retry-After": when}), OK)
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.ok
    assert len(sleeps.waits) == 1 and 2.0 < sleeps.waits[0] <= 4.0


async def test_retry_after_beyond_the_cap_ends_the_call(
    provider: FakeProvider, make_caller: CallerFactory, sleeps: RecordingSleep
) -> None:
    provider.on("/v1/me", Reply(status=429, headers={"Retry-After": "3600"}), OK)
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.category is FailureCategory.RATE_LIMITED
    assert len(outcome.attempts) == 1
    assert sleeps.waits == []


async def test_total_time_is_bounded(
    provider: FakeProvider, make_caller: CallerFactory, sleeps: RecordingSleep
) -> None:
    # A 5 s Retry-After does not fit in a 2 s budget: the call ends instead of waiting.
    provider.on("/v1/me", Reply(status=503, headers={"Retry-After": "5"}), OK)
    outcome = await make_caller().call(
        probe(provider, total_timeout=2.0), credential(AuthMode.API_KEY, "k")
    )
    assert outcome.category is FailureCategory.SERVER_ERROR
    assert len(outcome.attempts) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (400, FailureCategory.CLIENT_ERROR),
        (401, FailureCategory.AUTHENTICATION),
        (403, FailureCategory.AUTHORIZATION),
        (404, FailureCategory.CLIENT_ERROR),
        (501, FailureCategory.SERVER_ERROR),
    ],
)
async def test_no_retry_for_client_errors(
    provider: FakeProvider,
    make_caller: CallerFactory,
    sleeps: RecordingSleep,
    status: int,
    category: FailureCategory,
) -> None:
    provider.on("/v1/me", Reply(status=status, json={"error": "nope"}), OK)
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.category is category
    assert outcome.status == status
    assert len(outcome.attempts) == 1
    assert outcome.response_excerpt == '{"error":"nope"}'
    assert sleeps.waits == []
    assert len(provider.seen("/v1/me")) == 1


@pytest.mark.parametrize("idempotent", [None, False])
async def test_no_retry_for_non_idempotent_requests(
    provider: FakeProvider, make_caller: CallerFactory, idempotent: bool | None
) -> None:
    provider.on("/messages", Reply(status=503), Reply(status=201))
    request = probe(
        provider,
        "/messages",
        method="POST",
        json_body={"to": "+15550001"},
        expect_status=201,
        idempotent=idempotent,
    )
    outcome = await make_caller().call(request, credential(AuthMode.API_KEY, "k"))
    assert outcome.category is FailureCategory.SERVER_ERROR
    assert len(outcome.attempts) == 1
    seen = provider.seen("/messages", method="POST")
    assert len(seen) == 1
    assert json.loads(seen[0].body) == {"to": "+15550001"}
    assert seen[0].headers["content-type"] == "application/json"


async def test_a_post_declared_idempotent_is_retried(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.on("/search", Reply(status=503), OK)
    outcome = await make_caller().call(
        probe(provider, "/search", method="POST", idempotent=True),
        credential(AuthMode.API_KEY, "k"),
    )
    assert outcome.ok
    assert len(outcome.attempts) == 2


# --- Classification --------------------------------------------------------------------


async def test_timeout_is_classified_timeout(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.on("/slow", Reply(json={}, delay=0.5))
    outcome = await make_caller().call(
        probe(provider, "/slow", timeout=0.1, max_attempts=1), credential(AuthMode.API_KEY, "k")
    )
    assert outcome.category is FailureCategory.TIMEOUT
    assert outcome.status is None
    assert outcome.latency_ms is not None and 90 <= outcome.latency_ms < 450
    assert "no answer within 0.1 s" in (outcome.message or "")


async def test_timeouts_are_retried_for_idempotent_requests(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.on("/slow", Reply(json={}, delay=0.4), OK)
    outcome = await make_caller().call(
        probe(provider, "/slow", timeout=0.1), credential(AuthMode.API_KEY, "k")
    )
    assert outcome.ok
    assert [a.category for a in outcome.attempts] == [FailureCategory.TIMEOUT, None]


async def test_connection_refused_is_network(make_caller: CallerFactory) -> None:
    request = ProviderRequest(
        base_url=f"http://127.0.0.1:{unused_port()}", path="/v1/me", max_attempts=2
    )
    outcome = await make_caller().call(request, credential(AuthMode.API_KEY, "k"))
    assert outcome.category is FailureCategory.NETWORK
    assert outcome.status is None
    assert len(outcome.attempts) == 2  # retried: nothing reached the provider
    assert outcome.attempts[0].address == "127.0.0.1"
    assert "ConnectError" in (outcome.message or "")


async def test_unresolvable_host_is_network(
    make_caller: CallerFactory, resolver: CountingResolver
) -> None:
    resolver.names["gone.example.com"] = []
    request = ProviderRequest(base_url="https://gone.example.com", path="/v1/me", max_attempts=1)
    outcome = await make_caller(allow_loopback=False).call(
        request, credential(AuthMode.API_KEY, "k")
    )
    assert outcome.category is FailureCategory.NETWORK
    assert outcome.attempts[0].address is None


@pytest.mark.parametrize(
    "header",
    ["X-Request-Id", "x-request-id", "Request-Id", "Twilio-Request-Id", "X-Amzn-RequestId"],
)
async def test_external_ref_from_the_request_id_header(
    provider: FakeProvider, make_caller: CallerFactory, header: str
) -> None:
    provider.on("/v1/me", Reply(json={}, headers={header: "RQ0123456789abcdef"}))
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.external_ref == "RQ0123456789abcdef"
    assert outcome.attempts[0].external_ref == "RQ0123456789abcdef"


async def test_external_ref_is_kept_from_the_failed_answer(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.on("/v1/me", Reply(status=403, headers={"X-Correlation-Id": "corr-9"}))
    outcome = await make_caller().call(probe(provider), credential(AuthMode.API_KEY, "k"))
    assert outcome.category is FailureCategory.AUTHORIZATION
    assert outcome.external_ref == "corr-9"


@pytest.mark.parametrize(
    ("answer", "expect", "category"),
    [
        (204, 200, FailureCategory.CLIENT_ERROR),  # 2xx but not the promised status
        (200, 204, FailureCategory.CLIENT_ERROR),
        (201, 201, None),
        (302, 200, FailureCategory.CONFIGURATION),  # redirects are not followed
    ],
)
async def test_the_expected_status_decides_success(
    provider: FakeProvider,
    make_caller: CallerFactory,
    answer: int,
    expect: int,
    category: FailureCategory | None,
) -> None:
    headers = {"Location": "https://elsewhere.example/"} if answer == 302 else {}
    provider.on("/v1/me", Reply(status=answer, headers=headers))
    outcome = await make_caller().call(
        probe(provider, expect_status=expect), credential(AuthMode.API_KEY, "k")
    )
    assert outcome.ok is (category is None)
    assert outcome.category is category
    assert outcome.status == answer
    assert len(outcome.attempts) == 1
    assert len(provider.requests) == 1  # the redirect was not followed


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (200, None),
        (299, None),
        (401, FailureCategory.AUTHENTICATION),
        (403, FailureCategory.AUTHORIZATION),
        (429, FailureCategory.RATE_LIMITED),
        (408, FailureCategory.TIMEOUT),
        (500, FailureCategory.SERVER_ERROR),
        (504, FailureCategory.SERVER_ERROR),
        (404, FailureCategory.CLIENT_ERROR),
        (422, FailureCategory.CLIENT_ERROR),
        (301, FailureCategory.CONFIGURATION),
        (101, FailureCategory.UNKNOWN),
    ],
)
def test_classify_statuses(status: int, category: FailureCategory | None) -> None:
    assert classify(status=status) is category


def test_classify_errors() -> None:
    request = httpx.Request("GET", "https://x.example")
    assert classify(error=httpx.ConnectTimeout("t", request=request)) is FailureCategory.TIMEOUT
    assert classify(error=httpx.ReadTimeout("t", request=request)) is FailureCategory.TIMEOUT
    assert classify(error=TimeoutError()) is FailureCategory.TIMEOUT
    assert classify(error=httpx.ConnectError("x", request=request)) is FailureCategory.NETWORK
    assert (
        classify(error=httpx.RemoteProtocolError("x", request=request)) is FailureCategory.NETWORK
    )
    assert classify(error=ConnectionResetError()) is FailureCategory.NETWORK
    assert classify(error=ConfigurationInvalid("x")) is FailureCategory.CONFIGURATION
    assert classify(error=ValueError("x")) is FailureCategory.UNKNOWN
    assert classify(status=200, expect_status=201) is FailureCategory.CLIENT_ERROR


# --- Templates and egress ------------------------------------------------------------------


def test_render_url() -> None:
    config = {"install": "acme", "geo": "au", "accountSid": "AC12", "restEndpoint": "rest.x.io"}
    assert (
        render_url("https://{install}.{geo}.deputy.com", "/api/v1/me", config)
        == "https://acme.au.deputy.com/api/v1/me"
    )
    assert (
        render_url("https://api.twilio.com/2010-04-01/", "/Accounts/{accountSid}.json", config)
        == "https://api.twilio.com/2010-04-01/Accounts/AC12.json"
    )
    assert render_url("https://{restEndpoint}", "/campaigns/list", config) == (
        "https://rest.x.io/campaigns/list"
    )
    assert render_url("https://x.io", "/find?q={accountSid}&n=1", {"accountSid": "a&b=c"}) == (
        "https://x.io/find?q=a%26b%3Dc&n=1"
    )
    assert render_url("http://127.0.0.1:{port}", "/x", {"port": 8080}) == "http://127.0.0.1:8080/x"
    assert (
        render_url("https://x.io/v1", "/s/{id}", {"id": "a+b:c"}) == "https://x.io/v1/s/a%2Bb%3Ac"
    )


@pytest.mark.parametrize(
    ("base_url", "path", "configuration"),
    [
        ("https://{install}.{geo}.deputy.com", "/api/v1/me", {"install": "acme"}),  # missing
        ("https://{install}.au.deputy.com", "/x", {"install": "evil.com/x"}),
        ("https://{install}.au.deputy.com", "/x", {"install": "evil.com#"}),
        ("https://{install}.au.deputy.com", "/x", {"install": "u@evil.com"}),
        ("https://{install}.au.deputy.com", "/x", {"install": "a.evil.com"}),  # two labels
        ("https://{install}.au.deputy.com", "/x", {"install": "-acme"}),
        ("https://{install}.au.deputy.com", "/x", {"install": "évil"}),
        ("https://{restEndpoint}", "/x", {"restEndpoint": "evil.com:25"}),
        ("https://{restEndpoint}", "/x", {"restEndpoint": "evil.com/path"}),
        ("https://{restEndpoint}", "/x", {"restEndpoint": "user@evil.com"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": "../admin"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": ".."}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": "a/b"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": "a?admin=1"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": "a#x"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": "%2e%2e"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": "a\r\nHost: x"}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": ""}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": True}),
        ("https://api.twilio.com", "/Accounts/{sid}.json", {"sid": {"a": 1}}),
        ("http://127.0.0.1:{port}", "/x", {"port": "80/evil"}),
        ("https://api.x.io", "//evil.com/x", {}),
        ("https://api.x.io", "x", {}),
        ("{scheme}://api.x.io", "/x", {"scheme": "https"}),
    ],
)
async def test_template_problems_are_configuration_and_send_nothing(
    provider: FakeProvider,
    make_caller: CallerFactory,
    resolver: CountingResolver,
    base_url: str,
    path: str,
    configuration: dict[str, object],
) -> None:
    with pytest.raises(ConfigurationInvalid):
        render_url(base_url, path, configuration)
    request = ProviderRequest(base_url=base_url, path=path, configuration=configuration)
    outcome = await make_caller().call(request, credential(AuthMode.API_KEY, "k"))
    assert outcome.category is FailureCategory.CONFIGURATION
    assert outcome.attempts == ()
    assert resolver.lookups == {}
    assert provider.requests == []


async def test_template_error_names_the_configuration_field(make_caller: CallerFactory) -> None:
    caller = make_caller()
    with pytest.raises(ConfigurationInvalid) as invalid:
        caller.prepare_target(
            ProviderRequest(
                base_url="https://{install}.au.deputy.com",
                path="/api/v1/me",
                configuration={"install": "a/b"},
            ),
            field_prefix="input.configuration.",
        )
    assert invalid.value.field == "input.configuration.install"
    assert invalid.value.code == "INVALID_CONFIGURATION"


@pytest.mark.parametrize(
    "base_url", ["http://api.example.com", "https://10.0.0.1", "https://localhost:8443"]
)
async def test_egress_refusals_are_configuration_and_send_nothing(
    make_caller: CallerFactory, resolver: CountingResolver, base_url: str
) -> None:
    outcome = await make_caller(allow_loopback=False).call(
        ProviderRequest(base_url=base_url, path="/v1/me"), credential(AuthMode.API_KEY, "k")
    )
    assert outcome.category is FailureCategory.CONFIGURATION
    assert outcome.attempts == ()
    assert resolver.lookups == {}


async def test_a_name_resolving_to_a_private_address_is_refused_at_call_time(
    make_caller: CallerFactory, resolver: CountingResolver
) -> None:
    resolver.names["internal.example.com"] = ["10.20.30.40"]
    outcome = await make_caller(allow_loopback=False).call(
        ProviderRequest(base_url="https://internal.example.com", path="/v1/me"),
        credential(AuthMode.API_KEY, "k"),
    )
    assert outcome.category is FailureCategory.CONFIGURATION
    assert len(outcome.attempts) == 1  # resolved, refused, not retried
    assert outcome.attempts[0].address is None
    assert "10.20.30.40" in (outcome.message or "")


async def test_pinned_name_reaches_the_fake_with_its_host_header(
    provider: FakeProvider, make_caller: CallerFactory, resolver: CountingResolver
) -> None:
    provider.on("/api/v1/me", OK)
    port = int(provider.base_url.rsplit(":", 1)[1])
    request = ProviderRequest(
        base_url="http://{install}.test:{port}",
        path="/api/v1/me",
        configuration={"install": "provider", "port": port},
    )
    outcome = await make_caller().call(request, credential(AuthMode.BEARER_TOKEN, "t"))
    assert outcome.ok, outcome
    assert provider.seen("/api/v1/me")[0].headers["host"] == f"provider.test:{port}"
    assert resolver.lookups == {"provider.test": 1}


# --- AuthScheme from a provider definition -----------------------------------------------


def test_auth_scheme_from_mapping() -> None:
    assert AuthScheme.from_mapping(None) == AuthScheme()
    scheme = AuthScheme.from_mapping(
        {
            "apiKey": {"in": "query", "names": ["api_key", "api_secret"]},
            "bearer": {"prefix": "OAuth"},
            "oauth2": {"tokenUrl": "/oauth/token", "scope": "a b", "params": {"audience": "x"}},
        }
    )
    assert scheme.api_key_in == "query"
    assert scheme.api_key_names == ("api_key", "api_secret")
    assert scheme.bearer_prefix == "OAuth"
    assert scheme.bearer_header == "Authorization"
    assert scheme.token_url == "/oauth/token"
    assert scheme.token_params == {"audience": "x"}
    bad_shapes: list[dict[str, Any]] = [
        {"apiKey": {"in": "cookie"}},
        {"apiKey": {"names": "X-Key"}},
        {"apiKey": {"names": ["Bad Header"]}},
        {"bearer": {"header": 1}},
        {"oauth2": {"clientAuth": "jwt"}},
        {"hmac": {}},
    ]
    for bad in bad_shapes:
        with pytest.raises(ValueError):  # noqa: PT011
            AuthScheme.from_mapping(bad)


async def test_oauth_extra_token_params_are_sent(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret/+=")
    provider.on("/v1/me", OK)
    scheme = AuthScheme(token_url="/oauth/token", token_params={"audience": "https://api"})
    outcome = await make_caller().call(
        probe(provider, auth=scheme), credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, OAUTH_SECRET)
    )
    assert outcome.ok, outcome
    assert b"audience=https%3A%2F%2Fapi" in provider.seen("/oauth/token")[0].body


# --- Secrets never leak ------------------------------------------------------------------


CANARY = "canary-7f3a9c1e5b2d4806"


@pytest.mark.parametrize(
    ("mode", "secret", "scheme"),
    [
        (AuthMode.API_KEY, CANARY, AuthScheme()),
        (
            AuthMode.API_KEY,
            json.dumps({"api_key": "id-1", "api_secret": CANARY}),
            AuthScheme(api_key_in="query", api_key_names=("api_key", "api_secret")),
        ),
        (AuthMode.BEARER_TOKEN, CANARY, AuthScheme()),
        (AuthMode.BASIC, f"user-1:{CANARY}", AuthScheme()),
        (
            AuthMode.OAUTH2_CLIENT_CREDENTIALS,
            json.dumps({"client_id": "client-1", "client_secret": CANARY}),
            AuthScheme(token_url="/oauth/token"),
        ),
    ],
)
async def test_canary_secret_appears_nowhere(
    provider: FakeProvider,
    make_caller: CallerFactory,
    caplog: pytest.LogCaptureFixture,
    mode: AuthMode,
    secret: str,
    scheme: AuthScheme,
) -> None:
    caplog.set_level(logging.DEBUG)
    oauth = provider.enable_oauth("client-1", CANARY)
    # The provider echoes the request (headers and query) in an error body, twice; then
    # the connection is refused.
    provider.on("/echo", Reply(status=500, echo=True), Reply(status=400, echo=True))
    caller = make_caller()
    cred = credential(mode, secret)
    outcomes = [
        await caller.call(probe(provider, "/echo", auth=scheme), cred),
        await caller.call(
            ProviderRequest(base_url=f"http://127.0.0.1:{unused_port()}", path="/x", auth=scheme),
            cred,
        ),
        await caller.call(probe(provider, "/echo", auth=scheme, method="POST"), cred),
    ]
    secrets = [CANARY, base64.b64encode(f"user-1:{CANARY}".encode()).decode()]
    secrets += list(oauth.tokens)  # issued access tokens are secrets too

    # The secret did reach the provider (the test would prove nothing otherwise) ...
    echoed = provider.seen("/echo")
    assert echoed and any(
        CANARY in json.dumps([r.headers, r.query])
        or secrets[1] in json.dumps(r.headers)
        or any(t in json.dumps(r.headers) for t in oauth.tokens)
        for r in echoed
    )
    # ... and the echo was kept as an excerpt, scrubbed.
    assert outcomes[0].attempts[0].response_excerpt
    assert "[REDACTED]" in (outcomes[0].attempts[0].response_excerpt or "")

    text = "\n".join(
        [repr(o) for o in outcomes]
        + [str(o.message) for o in outcomes]
        + [str(a.response_excerpt) for o in outcomes for a in o.attempts]
        + [repr(cred), repr(caller)]
    )
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # DEBUG was on
    assert any(r.name == "httpx" for r in caplog.records)
    for value in secrets:
        assert value not in text
        assert value not in logged
