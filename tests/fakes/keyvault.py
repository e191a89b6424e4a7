"""A stand-in Azure Key Vault speaking the secrets REST protocol over HTTPS on loopback.

Driven by the real ``azure-keyvault-secrets`` aio client (any ``api-version`` it sends, 7.x
or dated). Shapes follow the Key Vault REST reference and recorded SDK traffic:

- ``PUT /secrets/{name}`` sets a new version and answers the SecretBundle:
  ``{"value", "id": "{vault}/secrets/{name}/{version}", "attributes": {"enabled", "created",
  "updated", "exp", "nbf", "recoveryLevel", "recoverableDays"}, "contentType", "tags"}``
  (times in Unix seconds; absent fields omitted).
- ``GET /secrets/{name}/{version}``, and ``GET /secrets/{name}/`` (empty version) for the
  latest; a disabled version answers 403 ``Forbidden`` / inner ``SecretDisabled``
  ("Operation get is not allowed on a disabled secret."). Expiry is not enforced on get,
  as the real service does not enforce it either.
- ``GET /secrets/{name}/versions`` pages of ``{"value": [SecretItem…], "nextLink": …}``
  (no values) with ``$skiptoken``; at most ``page_size`` (default 2) items a page, so paging
  is always exercised. Items come in version-id order, not creation order, as Key Vault does
  not order them by time either.
- ``PATCH /secrets/{name}/{version}`` updates ``attributes``, ``contentType`` and ``tags``.
- Errors use Key Vault's body ``{"error": {"code", "message", "innererror"?}}``; an unknown
  secret is 404 ``SecretNotFound``.
- A request without ``Authorization: Bearer …`` gets the 401 challenge
  ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"``, the header ``ChallengeAuthPolicy`` parses.

It also answers the Microsoft Entra client-credentials token endpoint
(``POST /{tenant}/oauth2/v2.0/token``), so a process using ``DefaultAzureCredential`` with a
service principal from the environment can authenticate against it (see ``connect_proxy``).

Programmable: ``fail_next`` (the next N authenticated requests answer an error such as 429 or
503), ``accepted_tokens`` (reject bearer tokens not in the set), ``advance`` (move the clock).
Everything seen is recorded in ``requests`` and ``token_requests``.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode

from azure.core.credentials import AccessToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.tls import TlsFiles, make_tls, serve_https

TENANT_ID = "5f1c0d2e-8a3b-4c6d-9e7f-0a1b2c3d4e5f"
AUTHORITY = "https://login.microsoftonline.com"
KEYVAULT_RESOURCE = "https://vault.azure.net"
KEYVAULT_SCOPE = f"{KEYVAULT_RESOURCE}/.default"
NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
MAX_VALUE_BYTES = 25 * 1024

Handler = Callable[..., Awaitable[Response]]


@dataclass
class StoredVersion:
    name: str
    version: str
    value: str = field(repr=False)
    created: int
    updated: int
    enabled: bool = True
    exp: int | None = None
    nbf: int | None = None
    content_type: str | None = None
    tags: dict[str, str] | None = None


@dataclass
class SeenRequest:
    method: str
    path: str
    query: str
    host: str
    api_version: str | None
    authorization: str | None
    body_length: int
    status: int = 0

    @property
    def bearer(self) -> str | None:
        auth = self.authorization or ""
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None


@dataclass(frozen=True)
class Fault:
    status: int
    code: str
    message: str
    inner_code: str | None = None
    retry_after: int | None = None


_FAULT_TEXT = {
    401: ("Unauthorized", "AKV10032: Invalid issuer."),
    403: (
        "Forbidden",
        "The user, group or application does not have secrets get permission on key vault.",
    ),
    408: ("RequestTimeout", "The request timed out."),
    429: (
        "Throttled",
        "Request was not processed because too many requests were received.",
    ),
    500: ("InternalServerError", "An unexpected error occurred."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


def _error(status: int, code: str, message: str, inner: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if inner:
        body["innererror"] = {"code": inner}
    return JSONResponse({"error": body}, status_code=status)


class KeyVaultStandIn:
    def __init__(self, *, tenant_id: str = TENANT_ID, page_size: int = 2) -> None:
        self.tenant_id = tenant_id
        self.page_size = page_size
        self.secrets: dict[str, list[StoredVersion]] = {}  # versions in creation order
        self.requests: list[SeenRequest] = []
        self.token_requests: list[dict[str, str]] = []
        self.accepted_tokens: set[str] | None = None  # None: any bearer token is accepted
        self.clients: dict[str, str] = {}  # service principals: client id -> client secret
        self.tls: TlsFiles | None = None
        self.port = 0
        self._faults: deque[Fault] = deque()
        self._skew = 0.0
        self.app = Starlette(
            routes=[
                Route(
                    "/secrets/{name}/versions", self._guard(self._list_versions), methods=["GET"]
                ),
                Route(
                    "/secrets/{name}/", self._guard(self._get_or_update), methods=["GET", "PATCH"]
                ),
                Route(
                    "/secrets/{name}/{version}",
                    self._guard(self._get_or_update),
                    methods=["GET", "PATCH"],
                ),
                Route("/secrets/{name}", self._guard(self._set), methods=["PUT"]),
                Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            ]
        )

    # -- for tests --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        assert self.tls is not None, "the stand-in is not running"
        return self.tls.ca

    @property
    def challenge(self) -> str:
        return (
            f'Bearer authorization="{AUTHORITY}/{self.tenant_id}", resource="{KEYVAULT_RESOURCE}"'
        )

    def now(self) -> int:
        return int(time.time() + self._skew)

    def advance(self, seconds: float) -> None:
        self._skew += seconds

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        inner_code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` authenticated requests answer ``status`` instead of being served."""
        default_code, default_message = _FAULT_TEXT.get(status, ("Error", "Injected failure."))
        fault = Fault(
            status, code or default_code, message or default_message, inner_code, retry_after
        )
        self._faults.extend([fault] * count)

    def add_client(self, client_id: str, client_secret: str) -> None:
        self.clients[client_id] = client_secret

    def value_of(self, name: str, version: str) -> str:
        stored = self._find(name, version)
        assert stored is not None, f"{name}/{version} is not in the stand-in"
        return stored.value

    @contextlib.asynccontextmanager
    async def running(
        self, directory: Path, extra_hostnames: Sequence[str] = ()
    ) -> AsyncIterator[KeyVaultStandIn]:
        self.tls = make_tls(directory, ("127.0.0.1", "localhost", *extra_hostnames))
        async with serve_https(self.app, self.tls) as port:
            self.port = port
            yield self

    # -- protocol ---------------------------------------------------------------------------

    def _guard(self, handler: Handler) -> Handler:
        """Record, then the challenge, programmed faults and the api-version check."""

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            seen = SeenRequest(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                host=request.headers.get("host", ""),
                api_version=request.query_params.get("api-version"),
                authorization=request.headers.get("authorization"),
                body_length=len(body),
            )
            self.requests.append(seen)
            response = await self._answer(request, seen, handler)
            seen.status = response.status_code
            return response

        return endpoint

    async def _answer(self, request: Request, seen: SeenRequest, handler: Handler) -> Response:
        token = seen.bearer
        if not token or (self.accepted_tokens is not None and token not in self.accepted_tokens):
            message = (
                "AKV10000: Request is missing a Bearer or PoP token."
                if not token
                else "AKV10032: Invalid issuer."
            )
            response = _error(401, "Unauthorized", message)
            response.headers["WWW-Authenticate"] = self.challenge
            return response
        if self._faults:
            fault = self._faults.popleft()
            response = _error(fault.status, fault.code, fault.message, fault.inner_code)
            if fault.status == 401:
                response.headers["WWW-Authenticate"] = self.challenge
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
            return response
        if not seen.api_version:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        name = request.path_params["name"]
        if not NAME.match(name):
            return _error(400, "BadParameter", "The request URI contains an invalid name: " + name)
        return await handler(request, name)

    @staticmethod
    def _origin(request: Request) -> str:
        host = request.headers.get("host", "")
        return f"https://{host.removesuffix(':443')}"

    def _find(self, name: str, version: str | None) -> StoredVersion | None:
        versions = self.secrets.get(name, [])
        if not version:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    @staticmethod
    def _attributes(v: StoredVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if v.exp is not None:
            attributes["exp"] = v.exp
        if v.nbf is not None:
            attributes["nbf"] = v.nbf
        return attributes

    def _item(self, origin: str, v: StoredVersion) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"{origin}/secrets/{v.name}/{v.version}",
            "attributes": self._attributes(v),
        }
        if v.content_type is not None:
            item["contentType"] = v.content_type
        if v.tags:
            item["tags"] = v.tags
        return item

    def _bundle(self, origin: str, v: StoredVersion, *, with_value: bool) -> dict[str, Any]:
        item = self._item(origin, v)
        return {"value": v.value, **item} if with_value else item

    @staticmethod
    def _not_found(name: str) -> JSONResponse:
        return _error(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {name} was not found in this key vault. If you recently "
            "deleted this secret you may be able to recover it using the correct recovery "
            "command.",
        )

    async def _set(self, request: Request, name: str) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "BadParameter", "The request body is not valid JSON.")
        value = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(value, str):
            return _error(400, "BadParameter", "Property value is required.")
        if len(value.encode()) > MAX_VALUE_BYTES:
            return _error(400, "BadParameter", "Secret value is too large.")
        attributes = payload.get("attributes") or {}
        now = self.now()
        stored = StoredVersion(
            name=name,
            version=uuid.uuid4().hex,
            value=value,
            created=now,
            updated=now,
            enabled=attributes.get("enabled") is not False,
            exp=attributes.get("exp"),
            nbf=attributes.get("nbf"),
            content_type=payload.get("contentType"),
            tags=payload.get("tags"),
        )
        self.secrets.setdefault(name, []).append(stored)
        return JSONResponse(self._bundle(self._origin(request), stored, with_value=True))

    async def _get_or_update(self, request: Request, name: str) -> Response:
        stored = self._find(name, request.path_params.get("version"))
        if stored is None:
            return self._not_found(name)
        if request.method == "GET":
            if not stored.enabled:
                return _error(
                    403,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    "SecretDisabled",
                )
            return JSONResponse(self._bundle(self._origin(request), stored, with_value=True))
        payload = await request.json()
        attributes = payload.get("attributes") or {}
        if "enabled" in attributes and attributes["enabled"] is not None:
            stored.enabled = bool(attributes["enabled"])
        for attr in ("exp", "nbf"):
            if attr in attributes:
                setattr(stored, attr, attributes[attr])
        if "contentType" in payload:
            stored.content_type = payload["contentType"]
        if "tags" in payload:
            stored.tags = payload["tags"]
        stored.updated = self.now()
        return JSONResponse(self._bundle(self._origin(request), stored, with_value=False))

    async def _list_versions(self, request: Request, name: str) -> Response:
        versions = sorted(self.secrets.get(name, []), key=lambda v: v.version)
        start = int(request.query_params.get("$skiptoken") or 0)
        asked = int(request.query_params.get("maxresults") or 25)
        size = max(1, min(asked, 25, self.page_size))
        page = versions[start : start + size]
        origin = self._origin(request)
        next_link = None
        if start + size < len(versions):
            query = urlencode(
                {
                    "api-version": request.query_params["api-version"],
                    "$skiptoken": str(start + size),
                    "maxresults": str(size),
                }
            )
            next_link = f"{origin}/secrets/{name}/versions?{query}"
        return JSONResponse({"value": [self._item(origin, v) for v in page], "nextLink": next_link})

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        tenant = request.path_params["tenant"]
        client_id = form.get("client_id", "")
        self.token_requests.append(
            {
                "tenant": tenant,
                "client_id": client_id,
                "grant_type": form.get("grant_type", ""),
                "scope": form.get("scope", ""),
                "host": request.headers.get("host", ""),
            }
        )
        if tenant != self.tenant_id:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."},
                status_code=400,
            )
        if self.clients.get(client_id) != form.get("client_secret") or not client_id:
            return JSONResponse(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
                status_code=401,
            )
        if form.get("grant_type") != "client_credentials" or form.get("scope") != KEYVAULT_SCOPE:
            return JSONResponse(
                {"error": "invalid_scope", "error_description": "AADSTS70011: invalid scope."},
                status_code=400,
            )
        token = f"fake-entra-token-{uuid.uuid4().hex}"
        if self.accepted_tokens is not None:
            self.accepted_tokens.add(token)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }
        )


class StaticTokenCredential:
    """An ``AsyncTokenCredential`` handing out one fixed token; records what it was asked."""

    def __init__(self, token: str = "static-test-token") -> None:
        self.token = token
        self.asked: list[tuple[tuple[str, ...], str | None]] = []  # (scopes, tenant_id)
        self.closed = False

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.asked.append((scopes, tenant_id))
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()
