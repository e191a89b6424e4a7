"""A provider's base URL passes the egress policy when it is saved, like a webhook endpoint
(before, it was checked only when a call was made)."""

from __future__ import annotations

import pytest

from tests.conftest import TokenFactory
from tests.governance.conftest import (
    REGISTER_PROVIDER,
    ServerFactory,
    client,
    provider_input,
    registry_counts,
)
from tests.support.graphql import gql

pytestmark = pytest.mark.backends

REFUSED = [
    "http://hr.example.com/api",
    "https://127.0.0.1/api",
    "https://10.1.2.3",
    "https://169.254.169.254/latest",
    "https://[::1]:8443/api",
    "https://[::ffff:10.0.0.1]/",
    "https://0177.0.0.1/",
    "https://2130706433/",
    "https://localhost/api",
]
ACCEPTED = [
    "https://hr.example.com/api",
    "https://{install}.{geo}.deputy.com",
    "https://{host}/v1",
    "https://api.example.com:{port}/v1",
]


async def test_base_urls_the_egress_policy_refuses_are_refused_at_save(
    limited_server: ServerFactory, make_token: TokenFactory
) -> None:
    async with (
        limited_server(allow_loopback_targets=False) as server,
        client(server) as http,
    ):
        token = make_token()
        before = await registry_counts(server.services)
        for url in REFUSED:
            body = await gql(
                http,
                REGISTER_PROVIDER,
                {
                    "input": provider_input(
                        baseUrl=url,
                        verification={"method": "GET", "path": "/me", "expectStatus": 200},
                    )
                },
                token=token,
            )
            payload = body["data"]["registerProvider"]
            assert payload["provider"] is None, url
            assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
                ("input.baseUrl", "EGRESS_REFUSED")
            ], (url, payload)
        assert await registry_counts(server.services) == before
        schema = {
            "type": "object",
            "properties": {n: {"type": "string"} for n in ("install", "geo", "host", "port")},
            "required": ["install", "geo", "host", "port"],
        }
        for url in ACCEPTED:
            body = await gql(
                http,
                REGISTER_PROVIDER,
                {"input": provider_input(baseUrl=url, configurationSchema=schema)},
                token=token,
            )
            assert body["data"]["registerProvider"]["userErrors"] == [], (url, body)
