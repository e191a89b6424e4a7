"""The provider caller checks a credential's audience on the rendered URLs (the OAuth token
URL included) before anything is sent."""

from __future__ import annotations

import dataclasses
import json

import pytest

from studio_integrations.core.enums import AuthMode, FailureCategory
from studio_integrations.outbound.provider_calls import (
    AuthScheme,
    CredentialAudience,
    ProviderRequest,
)
from tests.domain.conftest import CallerFactory, credential
from tests.fakes.provider import FakeProvider, Reply

SECRET = json.dumps({"client_id": "client-1", "client_secret": "s3cret"})


@pytest.mark.parametrize(
    ("entries", "host", "allowed"),
    [
        (["api.example.com"], "api.example.com", True),
        (["api.example.com"], "API.example.com.", True),
        (["api.example.com"], "evil.example.com", False),
        (["*.example.com"], "eu.api.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "evilexample.com", False),
        (["prov_1"], "anything.test", False),
        ([], "api.example.com", False),
    ],
)
def test_hosts_in_an_audience(entries: list[str], host: str, allowed: bool) -> None:
    assert CredentialAudience.of(entries).allows(None, host) is allowed


async def test_the_oauth_token_url_is_checked_too(
    provider: FakeProvider, make_caller: CallerFactory
) -> None:
    provider.enable_oauth("client-1", "s3cret", token_path="/auth/token")
    provider.on("/v1/me", Reply(json={"ok": True}))
    request = ProviderRequest(
        base_url="https://api.example.com",
        path="/v1/me",
        auth=AuthScheme(token_url=provider.base_url + "/auth/token"),
    )
    # The API's host is in the audience, the token URL's is not: nothing is sent.
    resolved = dataclasses.replace(
        credential(AuthMode.OAUTH2_CLIENT_CREDENTIALS, SECRET),
        audience=CredentialAudience.of(["api.example.com"]),
        provider_id="prov_x",
    )
    outcome = await make_caller().call(request, resolved)
    assert not outcome.ok and outcome.category is FailureCategory.CONFIGURATION
    assert "audience" in (outcome.message or "")
    assert provider.requests == []
    # The provider itself in the audience allows its URLs.
    allowed = dataclasses.replace(resolved, audience=CredentialAudience.of(["prov_x"]))
    local = ProviderRequest(
        base_url=provider.base_url, path="/v1/me", auth=AuthScheme(token_url="/auth/token")
    )
    assert (await make_caller().call(local, allowed)).ok
