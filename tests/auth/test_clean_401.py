"""A refused token's 401 says why in our words, never in PyJWT's ("Invalid header padding",
"Invalid payload string: 'utf-8' codec can't decode …")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from studio_integrations.app import create_app
from studio_integrations.settings import Settings

KEY = "test-signing-key-0123456789abcdef0123456789abcdef"
REASONS = {
    "invalid token",
    "invalid token: malformed",
    "invalid token: bad signature",
    "invalid token: algorithm not allowed",
    "invalid token: wrong audience",
    "invalid token: wrong issuer",
    "invalid token: not valid yet",
    "invalid token: no 'exp' claim",
}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        state_dir=tmp_path / "state",
        dev_signing_key=KEY,  # type: ignore[arg-type]
        master_key="test-master-key",  # type: ignore[arg-type]
    )


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def tokens(settings: Settings) -> dict[str, tuple[str, str]]:
    now = datetime.now(UTC)
    good = {
        "sub": "alice",
        "tid": "acme",
        "scp": "audit:read",
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }

    def signed(key: str = KEY, **over: object) -> str:
        claims = {**good, **over}
        return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, "HS256")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    # Correctly signed, but the payload is not UTF-8 (PyJWT: "'utf-8' codec can't decode …").
    signing_input = f"{header}.{b64(bytes([0xFF, 0xFE]))}"
    mac = hmac.new(KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    return {
        "garbage": ("garbage", "invalid token: malformed"),
        "three-dots": ("a.b.c", "invalid token: malformed"),
        "bad-padding": (f"{header}.e30=.=", "invalid token: malformed"),
        "not-utf8": (f"{signing_input}.{b64(mac)}", "invalid token: malformed"),
        "other-key": (
            signed("another-key-0123456789abcdef0123456789"),
            "invalid token: bad signature",
        ),
        "alg-none": (
            jwt.encode(good, None, algorithm="none"),
            "invalid token: algorithm not allowed",
        ),
        "audience": (signed(aud="someone-else"), "invalid token: wrong audience"),
        "issuer": (signed(iss="https://evil.example"), "invalid token: wrong issuer"),
        "not-yet": (
            signed(nbf=int((now + timedelta(hours=1)).timestamp())),
            "invalid token: not valid yet",
        ),
        "no-exp": (signed(exp=None), "invalid token: no 'exp' claim"),
    }


async def test_refused_tokens_say_why_without_library_internals(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    for name, (token, expected) in tokens(settings).items():
        response = await http.post(
            "/graphql",
            json={"query": "{ viewer { subject } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, name
        message = response.json()["errors"][0]["message"]
        assert message == expected, (name, message)
        assert message in REASONS
