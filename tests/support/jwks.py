"""A real identity provider stand-in: a JWKS document served over HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.live import serve

ISSUER = "https://login.example.test/tenant/"
AUDIENCE = "api://studio-integrations"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        doc: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        doc.update(kid=self.kid, alg=self.alg, use="sig")
        return doc

    def token(self, **claims: Any) -> str:
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "sub": "alice",
            "tid": "acme",
            "scp": "audit:read connections:read",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=10)).timestamp()),
        }
        body.update(claims)
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": self.kid})


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class IdentityProvider:
    url: str
    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0


@asynccontextmanager
async def identity_provider(*keys: SigningKey) -> AsyncIterator[IdentityProvider]:
    idp = IdentityProvider(url="", keys=list(keys))

    async def jwks(_request: Request) -> JSONResponse:
        idp.fetches += 1
        return JSONResponse({"keys": [k.jwk() for k in idp.keys]})

    async with serve(Starlette(routes=[Route("/keys", jwks)])) as live:
        idp.url = f"{live.url}/keys"
        yield idp
