"""Token verification: the dev HS256 verifier and JWKS (RS256/ES256) against a live IdP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from studio_integrations.auth.scopes import ALL_SCOPES, Scope, parse_scopes
from studio_integrations.auth.tokens import (
    DevTokenVerifier,
    JwksTokenVerifier,
    make_verifier,
    mint_dev_token,
)
from studio_integrations.core.enums import ActorKind
from studio_integrations.core.errors import Unauthenticated
from studio_integrations.settings import Settings
from tests.support.jwks import AUDIENCE, ISSUER, ec_key, identity_provider, rsa_key


def _dev_settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, dev_signing_key="k" * 40)


async def test_dev_tokens_round_trip(tmp_path: Path) -> None:
    settings = _dev_settings(tmp_path)
    token = mint_dev_token(
        settings, tenant="acme", subject="alice", scopes=ALL_SCOPES, name="Alice"
    )
    principal = await DevTokenVerifier(settings).verify(token)
    assert (principal.subject, principal.tenant_id, principal.name) == ("alice", "acme", "Alice")
    assert principal.scopes == ALL_SCOPES
    assert principal.kind is ActorKind.USER
    assert principal.expires_at is not None and principal.expires_at > datetime.now(UTC)


async def test_dev_key_is_created_once_and_kept(tmp_path: Path) -> None:
    first = Settings(state_dir=tmp_path).resolved_dev_signing_key
    second = Settings(state_dir=tmp_path).resolved_dev_signing_key
    assert first == second and len(first) >= 40
    assert (tmp_path / "dev-signing-key").stat().st_mode & 0o777 == 0o600


async def test_dev_verifier_rejects_other_keys_and_expired_tokens(tmp_path: Path) -> None:
    settings = _dev_settings(tmp_path)
    verifier = DevTokenVerifier(settings)
    other = Settings(state_dir=tmp_path, dev_signing_key="x" * 40)
    with pytest.raises(Unauthenticated, match="invalid token"):
        await verifier.verify(mint_dev_token(other, tenant="acme", subject="a", scopes=set()))
    expired = mint_dev_token(
        settings, tenant="acme", subject="a", scopes=set(), ttl=timedelta(minutes=-2)
    )
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(expired)


def test_scope_parsing() -> None:
    assert parse_scopes("all") == ALL_SCOPES
    assert parse_scopes("audit:read, health:read") == {Scope.AUDIT_READ, Scope.HEALTH_READ}
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes("audit:read admin:everything")


def _jwks_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(state_dir=tmp_path, jwt_jwks_url=url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


@pytest.mark.parametrize("make_key", [rsa_key, ec_key], ids=["RS256", "ES256"])
async def test_jwks_tokens_are_verified(tmp_path: Path, make_key: object) -> None:
    key = make_key("k1")  # type: ignore[operator]
    async with identity_provider(key) as idp:
        settings = _jwks_settings(tmp_path, idp.url)
        verifier = make_verifier(settings)
        assert isinstance(verifier, JwksTokenVerifier)
        principal = await verifier.verify(key.token(scp="audit:read unknown:scope", name="Alice"))
        assert principal.tenant_id == "acme"
        assert principal.scopes == {Scope.AUDIT_READ}  # scopes for other APIs are ignored
        service = await verifier.verify(key.token(gty="client-credentials"))
        assert service.kind is ActorKind.SERVICE
        await verifier.aclose()


async def test_jwks_checks_issuer_audience_expiry_and_algorithm(tmp_path: Path) -> None:
    key = rsa_key("k1")
    async with identity_provider(key) as idp:
        verifier = JwksTokenVerifier(_jwks_settings(tmp_path, idp.url))
        past = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
        for bad, reason in [
            (key.token(iss="https://evil.example/"), "issuer"),
            (key.token(aud="api://other"), "audience"),
            (key.token(exp=past), "expired"),
        ]:
            with pytest.raises(Unauthenticated, match=f"(?i){reason}"):
                await verifier.verify(bad)
        # An HS256 token signed with the public key as secret (algorithm confusion) is refused.
        public_pem = key.jwk()
        confused = jwt.encode(
            {"sub": "a", "tid": "acme"}, str(public_pem), algorithm="HS256", headers={"kid": "k1"}
        )
        with pytest.raises(Unauthenticated, match="algorithm"):
            await verifier.verify(confused)
        await verifier.aclose()


async def test_jwks_is_refetched_when_the_idp_rotates_keys(tmp_path: Path) -> None:
    old, new = rsa_key("old"), ec_key("new")
    async with identity_provider(old) as idp:
        verifier = JwksTokenVerifier(_jwks_settings(tmp_path, idp.url), min_refresh_seconds=0)
        await verifier.verify(old.token())
        assert idp.fetches == 1
        await verifier.verify(old.token())
        assert idp.fetches == 1  # cached
        idp.keys.append(new)
        await verifier.verify(new.token())
        assert idp.fetches == 2
        stranger = rsa_key("stranger")
        with pytest.raises(Unauthenticated, match="unknown key"):
            await verifier.verify(stranger.token())
        await verifier.aclose()


async def test_unknown_kids_cannot_hammer_the_idp(tmp_path: Path) -> None:
    key = rsa_key("k1")
    async with identity_provider(key) as idp:
        verifier = JwksTokenVerifier(_jwks_settings(tmp_path, idp.url), min_refresh_seconds=60)
        await verifier.verify(key.token())
        for i in range(5):
            with pytest.raises(Unauthenticated):
                await verifier.verify(rsa_key(f"x{i}").token())
        assert idp.fetches == 1
        await verifier.aclose()
