"""Bearer token verification and dev token minting.

Two verifiers, chosen by settings, never both at once:
- ``JwksTokenVerifier`` (production, ``STUDIO_JWT_JWKS_URL`` set): RS256/ES256 tokens whose
  key is in the JWKS, with issuer and audience checks. Keys are cached and re-fetched when an
  unknown ``kid`` appears (at most once per ``min_refresh_seconds``), so rotation at the
  identity provider needs no restart.
- ``DevTokenVerifier`` (embedded default): HS256 with the dev signing key.

Claims (DESIGN §3): ``sub``, ``tid``, ``scp`` (or ``scope``), ``name``, ``exp``, ``iss``,
``aud``. Unknown scope names are ignored rather than failing the token: an identity
provider may issue scopes for other APIs in the same token.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import jwt

from studio_integrations.auth.principal import Principal
from studio_integrations.auth.scopes import Scope
from studio_integrations.core.enums import ActorKind
from studio_integrations.core.errors import Unauthenticated

ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]
LEEWAY_SECONDS = 30


class TokenSettings(Protocol):
    """What token handling reads of the service's settings (``settings.Settings`` has it;
    auth imports nothing but ``core/``)."""

    @property
    def jwt_jwks_url(self) -> str | None: ...
    @property
    def jwt_issuer(self) -> str | None: ...
    @property
    def jwt_audience(self) -> str | None: ...
    @property
    def production(self) -> bool: ...
    @property
    def uses_jwks(self) -> bool: ...
    @property
    def token_issuer(self) -> str: ...
    @property
    def token_audience(self) -> str: ...
    @property
    def resolved_dev_signing_key(self) -> str: ...


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


def authorization_of(connection_params: Any, headers: Mapping[str, str]) -> str | None:
    """The ``Authorization`` a client sent: over WebSockets, ``connection_init``'s payload
    (browsers cannot set headers on the upgrade), else the request's header."""
    params = connection_params if isinstance(connection_params, Mapping) else {}
    header = params.get("authorization") or params.get("Authorization")
    return header if isinstance(header, str) else headers.get("authorization")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; the one parser of it."""
    if not authorization:
        raise Unauthenticated("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    return token.strip()


# ``exp`` as a NumericDate (RFC 7519 §2): a JSON number, not a string or a boolean, and one
# a datetime can hold (year 9999 at most).
MAX_NUMERIC_DATE = 253_402_300_799
MAX_SUBJECT_CHARS = 200
MAX_TENANT_CHARS = 100
# Control characters (C0, DEL, C1), lone surrogates and the Unicode line separators: no
# identifier holds them, and PostgreSQL refuses NUL in text outright.
_NOT_AN_IDENTIFIER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _identifier(claims: dict[str, Any], name: str, what: str, limit: int) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"token has no {what} ({name})")
    if len(value) > limit or _NOT_AN_IDENTIFIER.search(value):
        raise Unauthenticated(
            f"token {what} ({name}) must be at most {limit} characters without control characters"
        )
    return value


def _expiry(claims: dict[str, Any]) -> datetime:
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Unauthenticated("token expiry (exp) must be a number of seconds")
    if not 0 <= exp <= MAX_NUMERIC_DATE:
        raise Unauthenticated("token expiry (exp) is out of range")
    return datetime.fromtimestamp(exp, UTC)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    subject = _identifier(claims, "sub", "subject", MAX_SUBJECT_CHARS)
    tenant = _identifier(claims, "tid", "tenant", MAX_TENANT_CHARS)
    expires_at = _expiry(claims)
    raw_scopes = claims.get("scp", claims.get("scope", ""))
    if isinstance(raw_scopes, list):
        raw_scopes = " ".join(str(s) for s in raw_scopes)
    if not isinstance(raw_scopes, str):
        raise Unauthenticated("token scopes (scp) must be a string")
    known = {s.value for s in Scope}
    scopes = frozenset(Scope(s) for s in raw_scopes.split() if s in known)
    name = claims.get("name")
    # Machine tokens: Auth0 marks them gty=client-credentials, Entra ID idtyp=app.
    machine = claims.get("gty") == "client-credentials" or claims.get("idtyp") == "app"
    kind = ActorKind.SERVICE if machine else ActorKind.USER
    return Principal(
        subject=subject,
        tenant_id=tenant,
        scopes=scopes,
        # A display name is optional: one that is not plain text is left out.
        name=name
        if isinstance(name, str)
        and len(name) <= MAX_SUBJECT_CHARS
        and not _NOT_AN_IDENTIFIER.search(name)
        else None,
        expires_at=expires_at,
        kind=kind,
    )


# Why a token was refused, in our words: PyJWT's own messages describe its internals
# ("Invalid header padding", "Invalid payload string: 'utf-8' codec can't decode …").
_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.DecodeError, "malformed"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.ImmatureSignatureError, "not valid yet"),
    (jwt.InvalidIssuedAtError, "issued in the future"),
)


def invalid_token(exc: jwt.InvalidTokenError) -> Unauthenticated:
    """The 401 for a token PyJWT refused, without PyJWT's internal wording."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthenticated(f"invalid token: no '{exc.claim}' claim")
    reason = next((text for kind, text in _REFUSALS if isinstance(exc, kind)), None)
    return Unauthenticated(f"invalid token: {reason}" if reason else "invalid token")


def _decode(
    token: str, key: Any, algorithms: list[str], settings_issuer: str, aud: str
) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=algorithms,
            issuer=settings_issuer,
            audience=aud,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise invalid_token(exc) from exc
    except (OverflowError, ValueError, TypeError) as exc:
        # PyJWT converts exp/iat/nbf with int(): 1e400 (JSON's inf) overflows.
        raise Unauthenticated("invalid token: a time claim is out of range") from exc


class DevTokenVerifier:
    def __init__(self, settings: TokenSettings) -> None:
        self._key = settings.resolved_dev_signing_key
        self._issuer = settings.token_issuer
        self._audience = settings.token_audience

    async def verify(self, token: str) -> Principal:
        return principal_from_claims(
            _decode(token, self._key, ["HS256"], self._issuer, self._audience)
        )


class JwksTokenVerifier:
    def __init__(
        self,
        settings: TokenSettings,
        *,
        http: httpx.AsyncClient | None = None,
        min_refresh_seconds: float = 30.0,
        cache_seconds: float = 3600.0,
    ) -> None:
        if not settings.jwt_jwks_url or not settings.jwt_issuer or not settings.jwt_audience:
            raise ValueError("JWKS verification needs STUDIO_JWT_JWKS_URL, _ISSUER and _AUDIENCE")
        self._url = settings.jwt_jwks_url
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._min_refresh = min_refresh_seconds
        self._cache_seconds = cache_seconds
        self._lock = asyncio.Lock()

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if (force and age < self._min_refresh) or (not force and age < self._cache_seconds):
                return
            try:
                response = await self._http.get(self._url)
                response.raise_for_status()
                keyset = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                if not self._keys:
                    raise Unauthenticated("signing keys unavailable") from exc
                return  # keep serving with the keys we have
            self._keys = {k.key_id: k for k in keyset.keys if k.key_id}
            self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise invalid_token(exc) from exc
        if header.get("alg") not in ASYMMETRIC_ALGORITHMS:
            raise Unauthenticated("token algorithm not allowed")
        kid = header.get("kid")
        await self._refresh(force=False)
        if kid not in self._keys:
            await self._refresh(force=True)
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        claims = _decode(token, key, [header["alg"]], self._issuer, self._audience)
        return principal_from_claims(claims)

    async def aclose(self) -> None:
        await self._http.aclose()


def make_verifier(settings: TokenSettings) -> TokenVerifier:
    """JWKS when configured, and always in production (which never accepts dev tokens;
    ``JwksTokenVerifier`` refuses to be built without its settings)."""
    if settings.uses_jwks or settings.production:
        return JwksTokenVerifier(settings)
    return DevTokenVerifier(settings)


def mint_dev_token(
    settings: TokenSettings,
    *,
    tenant: str,
    subject: str,
    scopes: frozenset[Scope] | set[Scope],
    name: str | None = None,
    ttl: timedelta = timedelta(hours=12),
    now: datetime | None = None,
) -> str:
    """A token the dev verifier accepts. Only for the embedded (non-JWKS) configuration."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "tid": tenant,
        "scp": " ".join(sorted(s.value for s in scopes)),
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, settings.resolved_dev_signing_key, algorithm="HS256")
