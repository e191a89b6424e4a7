"""Outbound calls to provider APIs: templates, auth, egress, retries, classification.

``ProviderCaller.call(request, credential)`` makes one logical call (a connection test, a
health probe, a rotation's verification, an operation) and returns a ``CallOutcome`` with
every attempt recorded. It never raises for anything the provider or the network does, and
it never talks to the vault: the caller resolves the credential's pinned version and passes
it in as a ``ResolvedCredential``.

Templates. ``base_url`` and ``path`` hold ``{placeholders}`` filled from the connection's
configuration. A value may not change the URL's structure: where a placeholder is the whole
host it must be a DNS host name (``rest.iad-01.braze.com``), where it is part of the host a
single DNS label (``{install}.{geo}.deputy.com``), in the port digits, in the path a single
non-empty segment without ``/ \\ ? # @ %``, whitespace or control characters (and not ``.``
or ``..``; the value is then percent-encoded), in a query it is percent-encoded whole. A
missing value or one that breaks these rules is a CONFIGURATION failure and no request is
sent; so is a URL the egress policy refuses (``domain.egress``).

Secret value formats, per auth mode (surrounding whitespace is ignored):

- ``API_KEY``: the key as plain text. When the provider's ``AuthScheme`` names several
  parameters (Vonage's ``api_key`` and ``api_secret``), a JSON object with exactly those
  names as keys and string values.
- ``BEARER_TOKEN``: the token as plain text.
- ``BASIC``: ``username:password`` (split at the first colon, as RFC 7617 forbids a colon in
  the user-id), or a JSON object ``{"username": …, "password": …}``.
- ``OAUTH2_CLIENT_CREDENTIALS``: a JSON object ``{"client_id": …, "client_secret": …}``.

A value that does not fit is a CONFIGURATION failure whose message names the expected format,
never the value. Values bound for a header must be printable ASCII.

How each mode is applied is the provider's ``AuthScheme`` (defaults in brackets): API key in
a header [``X-API-Key: <key>``, optionally ``<prefix> <key>`` such as MessageBird's
``Authorization: AccessKey <key>``] or as query parameters; bearer [``Authorization: Bearer
<token>``]; basic (RFC 7617); OAuth2 client credentials (RFC 6749 §4.4): the token comes from
the scheme's ``token_url`` (absolute, or a path on the base URL; else the configuration's
``tokenUrl``) with the scheme's or the configuration's ``scope``, client authentication by
HTTP Basic [or in the form body], and is sent like a bearer token. Tokens are cached per
(token URL, client id, scope, secret version) until shortly before ``expires_in`` (10 % of the
lifetime, at most 60 s, early; 300 s when the server gives no lifetime) and refreshed once
when the API answers 401 to a cached token. Tokens are never logged or returned.

Retries: only idempotent requests (GET, HEAD, OPTIONS by default) are retried, on NETWORK,
TIMEOUT (timeouts and 408), RATE_LIMITED (429) and SERVER_ERROR (5xx except 501), up to
``max_attempts`` and within ``total_timeout``. The wait is exponential back-off with jitter
(``backoff_base * 2**(n-1)`` capped at ``backoff_max``, then a uniform draw from its upper
half), or exactly ``Retry-After`` (seconds or an HTTP date) when a 429 or 503 carries one;
a ``Retry-After`` beyond ``retry_after_max`` or the remaining budget ends the call instead
(retrying sooner than the provider asked would only be refused again). The OAuth refresh on
401 is one extra attempt for any method: the API refused the request before acting on it.

Classification (``classify``): 401 AUTHENTICATION, 403 AUTHORIZATION, 429 RATE_LIMITED,
408 and timeouts TIMEOUT, connection/DNS/TLS errors NETWORK, 5xx SERVER_ERROR, other 4xx
CLIENT_ERROR, a status other than the expected one but 2xx CLIENT_ERROR (the provider
answered something other than what its verification contract promises: our request, not the
provider's health, is the suspect), 3xx CONFIGURATION (redirects are never followed: the
base URL is out of date), template, credential-format and egress problems CONFIGURATION,
anything else UNKNOWN. The token endpoint's answers map the same way, with RFC 6749's error
codes refining a 400: ``invalid_client``/``invalid_grant`` AUTHENTICATION,
``unauthorized_client``/``invalid_scope`` AUTHORIZATION.

Secrets: never passed to a logger, never put in an exception message, an attempt or an
outcome. Error messages and body excerpts are scrubbed of every secret of the call (and
their URL-encoded, JSON-escaped and Basic-encoded forms) in case a provider echoes one, and
the ``httpx`` logger gets a filter that masks query values (API keys in query parameters).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, quote_plus, urlencode

import httpx

from studio_integrations.core.enums import AuthMode, FailureCategory
from studio_integrations.core.errors import UserInputError
from studio_integrations.outbound.egress import (
    EgressRefused,
    EgressTarget,
    EgressUnresolvable,
    Resolver,
    check_target,
    install_log_redaction,
    resolve_target,
)
from studio_integrations.outbound.responses import read_capped, retry_after_seconds
from studio_integrations.telemetry.tracing import span
from studio_integrations.vault.base import SecretValue

log = logging.getLogger(__name__)

DEFAULT_PROBE_TIMEOUT = 5.0  # DESIGN §8: probes time out after 5 s
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TOTAL_TIMEOUT = 30.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REQUEST_ID_HEADERS = (
    "X-Request-Id",
    "Request-Id",
    "X-Amzn-RequestId",
    "X-Amz-Request-Id",
    "Twilio-Request-Id",
    "X-Correlation-Id",
    "X-Ms-Request-Id",
    "X-Trace-Id",
)
EXCERPT_CHARS = 500
BODY_READ_LIMIT = 64 * 1024  # read at most this much of a body; the rest is dropped unread
MAX_REF_CHARS = 200
MAX_MESSAGE_CHARS = 300
DEFAULT_TOKEN_LIFETIME = 300.0
REDACTED = "[REDACTED]"

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")
_PATH_FORBIDDEN = frozenset("/\\?#@%")
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")
_METHOD = re.compile(r"^[A-Z]{1,20}$")


class ConfigurationInvalid(UserInputError):
    """A request cannot be built from the templates and the configuration."""

    code = "INVALID_CONFIGURATION"
    category = FailureCategory.CONFIGURATION


class CredentialFormatInvalid(UserInputError):
    """The secret's value is not in the format its auth mode expects (the value is not shown)."""

    code = "INVALID_SECRET_FORMAT"
    category = FailureCategory.CONFIGURATION


# --- What the caller passes in ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """How a provider wants each auth mode applied; the defaults suit most APIs."""

    # API_KEY: header(s) or query parameter(s); several names take a JSON secret (see above).
    api_key_in: Literal["header", "query"] = "header"
    api_key_names: tuple[str, ...] = ("X-API-Key",)
    api_key_prefix: str = ""  # e.g. "AccessKey": "Authorization: AccessKey <key>"
    # BEARER_TOKEN, and the access tokens of OAUTH2_CLIENT_CREDENTIALS.
    bearer_header: str = "Authorization"
    bearer_prefix: str = "Bearer"
    # OAUTH2_CLIENT_CREDENTIALS.
    token_url: str | None = None  # template; absolute or a path on the base URL
    scope: str | None = None
    token_client_auth: Literal["basic", "body"] = "basic"
    token_params: Mapping[str, str] = field(default_factory=dict)  # e.g. {"audience": …}

    def __post_init__(self) -> None:
        if self.api_key_in not in ("header", "query") or not self.api_key_names:
            raise ValueError("api_key_in must be header or query, with at least one name")
        if self.api_key_in == "header" and not all(
            _HEADER_NAME.match(n) for n in self.api_key_names
        ):
            raise ValueError("api_key_names must be HTTP header names")
        if not _HEADER_NAME.match(self.bearer_header):
            raise ValueError("bearer_header must be an HTTP header name")
        for prefix in (self.api_key_prefix, self.bearer_prefix):
            if prefix and not _HEADER_VALUE.match(prefix):
                raise ValueError("prefixes must be printable ASCII")
        if self.token_client_auth not in ("basic", "body"):
            raise ValueError("token_client_auth must be basic or body")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> AuthScheme:
        """Read the camelCase shape a provider definition can carry (all parts optional)::

            {"apiKey": {"in": "header"|"query", "names": [...], "prefix": "AccessKey"},
             "bearer": {"header": "Authorization", "prefix": "Bearer"},
             "oauth2": {"tokenUrl": "/oauth/token", "scope": "...",
                        "clientAuth": "basic"|"body", "params": {"audience": "..."}}}

        Raises ``ValueError`` for anything else."""
        if not data:
            return cls()
        unknown = set(data) - {"apiKey", "bearer", "oauth2"}
        if unknown:
            raise ValueError(f"unknown authScheme keys: {', '.join(sorted(unknown))}")
        api_key = _section(data, "apiKey", {"in", "names", "prefix"})
        bearer = _section(data, "bearer", {"header", "prefix"})
        oauth2 = _section(data, "oauth2", {"tokenUrl", "scope", "clientAuth", "params"})
        defaults = cls()
        names = api_key.get("names", list(defaults.api_key_names))
        params = oauth2.get("params", {})
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError("authScheme.apiKey.names must be a list of names")
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise ValueError("authScheme.oauth2.params must map names to strings")
        return cls(
            api_key_in=_str(api_key, "in", defaults.api_key_in),
            api_key_names=tuple(names),
            api_key_prefix=_str(api_key, "prefix", ""),
            bearer_header=_str(bearer, "header", defaults.bearer_header),
            bearer_prefix=_str(bearer, "prefix", defaults.bearer_prefix),
            token_url=_str(oauth2, "tokenUrl", None),
            scope=_str(oauth2, "scope", None),
            token_client_auth=_str(oauth2, "clientAuth", "basic"),
            token_params=dict(params),
        )


@dataclass(frozen=True, slots=True)
class ResolvedCredential:
    """A credential's auth mode and its pinned secret version, read from the vault by the
    caller. ``SecretValue`` keeps its value out of reprs.

    ``audience`` and ``provider_id``: where the secret may go and the provider the call is
    for; ``call`` refuses (CONFIGURATION, nothing sent) a call the audience does not allow,
    checked on the rendered URL, the OAuth token URL included. ``None`` only for calls made
    without a stored credential (tests of the caller itself)."""

    auth_mode: AuthMode
    secret: SecretValue
    audience: CredentialAudience | None = None
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialAudience:
    """The providers (by id) and hosts (exact, or ``*.example.com`` for its subdomains) a
    credential's secret may be sent to (DESIGN §12). A provider in the audience may be
    called at any of its URLs: its definition is immutable once registered."""

    providers: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entries: list[str] | None) -> CredentialAudience:
        items = entries or []
        return cls(
            providers=frozenset(e for e in items if e.startswith("prov_")),
            hosts=frozenset(e.lower() for e in items if not e.startswith("prov_")),
        )

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in self.hosts:
            return True
        return any(
            entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]
            for entry in self.hosts
        )

    def allows(self, provider_id: str | None, host: str) -> bool:
        return (provider_id is not None and provider_id in self.providers) or self.allows_host(host)


class AudienceRefused(UserInputError):
    """The credential's audience does not include the call's provider or host."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"the credential's audience does not include {host}; nothing was sent",
            code="CREDENTIAL_AUDIENCE",
        )


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One logical request to a provider: what to send, what to expect, how hard to try."""

    base_url: str  # template, e.g. "https://{install}.{geo}.deputy.com"
    path: str  # template, e.g. "/api/v1/me" or "/Accounts/{accountSid}.json"
    method: str = "GET"
    configuration: Mapping[str, object] = field(default_factory=dict)
    expect_status: int = 200
    timeout: float = DEFAULT_PROBE_TIMEOUT  # per attempt
    idempotent: bool | None = None  # None: GET, HEAD and OPTIONS are
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT  # attempts and waits together
    auth: AuthScheme = field(default_factory=AuthScheme)
    headers: Mapping[str, str] = field(default_factory=dict)  # non-secret extra headers
    params: Mapping[str, str] = field(default_factory=dict)  # non-secret extra query
    json_body: Any = None  # sent as JSON when not None
    request_id_headers: tuple[str, ...] = REQUEST_ID_HEADERS

    def __post_init__(self) -> None:
        if not _METHOD.match(self.method):
            raise ValueError("method must be an upper-case HTTP method")
        if self.timeout <= 0 or self.total_timeout <= 0 or self.max_attempts < 1:
            raise ValueError("timeouts must be positive and max_attempts at least 1")

    @property
    def is_idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS if self.idempotent is None else self.idempotent


# --- What the caller gets back ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallAttempt:
    """One HTTP exchange (or the failure to have one). ``category`` is None on success;
    ``latency_ms`` is the attempt's wall time (an OAuth token fetch included, when one was
    needed); ``address`` is the IP the request was sent to (after the egress check);
    ``response_excerpt`` is the start of a failed answer's body, scrubbed of secrets (a
    successful answer's body is not kept)."""

    number: int
    started_at: datetime
    latency_ms: float
    http_status: int | None
    category: FailureCategory | None
    message: str | None
    external_ref: str | None = None
    address: str | None = None
    response_excerpt: str | None = None

    @property
    def ok(self) -> bool:
        return self.category is None


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The result of a call: the final attempt's status, latency and classification, every
    attempt, and the provider's request id (``external_ref``). No attempt at all means the
    request could not be built (``category`` CONFIGURATION) and nothing was sent."""

    ok: bool
    status: int | None
    latency_ms: float | None
    attempts: tuple[CallAttempt, ...]
    external_ref: str | None
    category: FailureCategory | None
    message: str | None
    response_excerpt: str | None = None


# --- Classification ---------------------------------------------------------------------


def classify(
    *,
    status: int | None = None,
    error: BaseException | None = None,
    expect_status: int | None = None,
) -> FailureCategory | None:
    """The failure category of an answer (``status``) or of an error; None means success:
    the expected status, or any 2xx when none is expected."""
    if error is not None:
        return _classify_error(error)
    if status is None:
        return FailureCategory.UNKNOWN
    if status == expect_status or (expect_status is None and 200 <= status < 300):
        return None
    if status == 401:
        return FailureCategory.AUTHENTICATION
    if status == 403:
        return FailureCategory.AUTHORIZATION
    if status == 429:
        return FailureCategory.RATE_LIMITED
    if status == 408:
        return FailureCategory.TIMEOUT
    if 500 <= status <= 599:
        return FailureCategory.SERVER_ERROR
    if 400 <= status <= 499 or 200 <= status <= 299:
        return FailureCategory.CLIENT_ERROR
    if 300 <= status <= 399:
        return FailureCategory.CONFIGURATION
    return FailureCategory.UNKNOWN


def _classify_error(error: BaseException) -> FailureCategory:
    if isinstance(error, _TokenFailure):
        return error.category
    if isinstance(error, (EgressRefused, ConfigurationInvalid, CredentialFormatInvalid)):
        return FailureCategory.CONFIGURATION
    if isinstance(error, EgressUnresolvable):
        return FailureCategory.NETWORK
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return FailureCategory.TIMEOUT
    network = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError, ssl.SSLError)
    if isinstance(error, (*network, OSError)):
        return FailureCategory.NETWORK
    return FailureCategory.UNKNOWN


def _retryable(category: FailureCategory, status: int | None) -> bool:
    if category is FailureCategory.SERVER_ERROR:
        return status != 501  # "not implemented" will not change
    return category in (
        FailureCategory.NETWORK,
        FailureCategory.TIMEOUT,
        FailureCategory.RATE_LIMITED,
    )


# --- Templates --------------------------------------------------------------------------


def render_url(
    base_url: str, path: str, configuration: Mapping[str, object], *, field_prefix: str = ""
) -> str:
    """``base_url`` + ``path`` with placeholders filled (rules in the module docstring);
    raise ``ConfigurationInvalid``. ``field_prefix`` prefixes the error's field (e.g.
    ``"input.configuration."``)."""
    scheme_end = base_url.find("://")
    if scheme_end <= 0 or PLACEHOLDER.search(base_url[:scheme_end]):
        raise ConfigurationInvalid("the provider's base URL must start with a scheme")
    scheme = base_url[: scheme_end + 3]
    rest = base_url[scheme_end + 3 :]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, base_path = rest[:cut], rest[cut:]
    if "@" in authority or "?" in base_path or "#" in base_path:
        raise ConfigurationInvalid(
            "the provider's base URL must not carry credentials, a query or a fragment"
        )
    if "#" in path or (path and not path.startswith("/")) or path.startswith("//"):
        raise ConfigurationInvalid("the request path must start with a single '/'")

    def value(name: str) -> str:
        raw = configuration.get(name)
        if raw is None:
            raise ConfigurationInvalid(
                f"the configuration has no value for '{name}', which the provider's URL needs",
                field=f"{field_prefix}{name}",
            )
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise ConfigurationInvalid(
                f"'{name}' must be a string to be used in the provider's URL",
                field=f"{field_prefix}{name}",
            )
        return str(raw)

    def refuse(name: str, what: str) -> ConfigurationInvalid:
        return ConfigurationInvalid(
            f"'{name}' must be {what} to be used in the provider's URL",
            field=f"{field_prefix}{name}",
        )

    host, sep, port = authority.rpartition(":") if "]" not in authority else (authority, "", "")
    if not sep:
        host, port = authority, ""

    def host_value(match: re.Match[str]) -> str:
        name, text = match.group(1), value(match.group(1))
        if match.group(0) == host:  # the whole host: a host name
            labels = text.rstrip(".").split(".")
            if len(text) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
                raise refuse(name, "a DNS host name")
        elif not _DNS_LABEL.match(text):
            raise refuse(name, "a single DNS label (letters, digits and '-')")
        return text.lower()

    def port_value(match: re.Match[str]) -> str:
        name, text = match.group(1), value(match.group(1))
        if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 65535:
            raise refuse(name, "a port number")
        return text

    def segment_value(match: re.Match[str]) -> str:
        name, text = match.group(1), value(match.group(1))
        if (
            not text
            or text in (".", "..")
            or any(c in _PATH_FORBIDDEN or c.isspace() or not c.isprintable() for c in text)
        ):
            raise refuse(name, "a single path segment (no '/', '?', '#', '@', '%' or spaces)")
        return quote(text, safe="-._~")

    def query_value(match: re.Match[str]) -> str:
        name, text = match.group(1), value(match.group(1))
        if not text.isprintable():
            raise refuse(name, "printable text")
        return quote(text, safe="-._~")

    path_part, qmark, query_part = path.partition("?")
    rendered = (
        scheme
        + PLACEHOLDER.sub(host_value, host)
        + (":" + PLACEHOLDER.sub(port_value, port) if sep else "")
        + PLACEHOLDER.sub(segment_value, base_path).rstrip("/")
        + PLACEHOLDER.sub(segment_value, path_part)
        + (qmark + PLACEHOLDER.sub(query_value, query_part) if qmark else "")
    )
    if "{" in rendered or "}" in rendered:
        raise ConfigurationInvalid("the provider's URL template has unmatched braces")
    return rendered


# --- Credentials ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OAuthClient:
    token_target: EgressTarget
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    scope: str | None
    client_auth: str
    params: tuple[tuple[str, str], ...]
    cache_key: tuple[str, ...] = field(repr=False)


@dataclass(slots=True)
class _Redactor:
    """Removes a call's secrets (and their encoded forms) from text we keep or show."""

    secrets: list[str] = field(default_factory=list, repr=False)

    def add(self, *values: str) -> None:
        for v in values:
            if len(v) < 4:  # too short to find reliably; such a secret protects nothing
                continue
            forms = {v, quote(v, safe=""), quote_plus(v), json.dumps(v)[1:-1]}
            self.secrets.extend(f for f in forms if f not in self.secrets)
        self.secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


@dataclass(slots=True)
class _Prepared:
    """A request ready to send: rendered target, auth material, scrubber."""

    request: ProviderRequest
    target: EgressTarget = field(repr=False)  # its query may hold an API key
    headers: dict[str, str] = field(repr=False)
    content: bytes | None = field(repr=False)
    oauth: _OAuthClient | None
    redact: _Redactor


def _parse_json_object(text: str, mode: AuthMode, expected: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CredentialFormatInvalid(f"a {mode.value} secret must be {expected}")
    return data


def _string_fields(
    data: Mapping[str, Any], names: tuple[str, ...], mode: AuthMode, expected: str
) -> list[str]:
    if set(data) != set(names) or not all(isinstance(data[n], str) and data[n] for n in names):
        raise CredentialFormatInvalid(f"a {mode.value} secret must be {expected}")
    return [str(data[n]).strip() for n in names]


def _header_safe(value: str, mode: AuthMode) -> str:
    if not _HEADER_VALUE.match(value):
        raise CredentialFormatInvalid(
            f"the {mode.value} secret holds characters that cannot be sent in an HTTP header"
        )
    return value


def _prefixed(prefix: str, value: str) -> str:
    return f"{prefix} {value}" if prefix else value


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# --- Tokens -----------------------------------------------------------------------------


class _TokenFailure(Exception):
    """The token endpoint did not give a token; the message is ours and secret-free."""

    def __init__(self, category: FailureCategory, message: str, status: int | None) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.status = status


@dataclass(slots=True)
class _CachedToken:
    token: str = field(repr=False)
    refresh_at: float


class _TokenCache:
    """Access tokens per (token URL, client id, scope, secret version); one fetch at a time
    per key, so concurrent calls share a token instead of each fetching one."""

    def __init__(self, clock: Callable[[], float], max_entries: int) -> None:
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, ...], _CachedToken] = OrderedDict()
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def get(
        self,
        key: tuple[str, ...],
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        *,
        rejected: str | None,
    ) -> tuple[str, bool]:
        """The token and whether it came from the cache. A ``rejected`` token is not reused
        (unless another call has already replaced it)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry and entry.token != rejected and self._clock() < entry.refresh_at:
                self._entries.move_to_end(key)
                return entry.token, True
            self._entries.pop(key, None)
            token, lifetime = await fetch()
            early = min(60.0, lifetime * 0.1)
            self._entries[key] = _CachedToken(token, self._clock() + lifetime - early)
            while len(self._entries) > self._max:
                old, _ = self._entries.popitem(last=False)
                self._locks.pop(old, None)
            return token, False


# --- The caller -------------------------------------------------------------------------


@dataclass(slots=True)
class _AttemptResult:
    attempt: CallAttempt
    retry_after: float | None = None
    token: str | None = field(default=None, repr=False)
    token_from_cache: bool = False
    api_answered: bool = False  # the status is the API's, not the token endpoint's


class ProviderCaller:
    """Makes provider calls on the process's shared ``httpx.AsyncClient`` (which must not
    follow redirects). One instance per process: it holds the OAuth token cache.

    ``resolver``, ``sleep``, ``clock`` and ``rng`` are for tests; ``clock`` (monotonic
    seconds) drives the total-time budget and token lifetimes."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        allow_loopback: bool,
        resolver: Resolver | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        token_cache_size: int = 1024,
    ) -> None:
        self._http = http
        self._allow_loopback = allow_loopback
        self._resolver = resolver
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._tokens = _TokenCache(clock, token_cache_size)
        install_log_redaction()

    def prepare_target(self, request: ProviderRequest, *, field_prefix: str = "") -> EgressTarget:
        """Render the request's URL and check it against the egress policy, without the
        network: for validating a connection's configuration before anything is sent.
        Raises ``ConfigurationInvalid`` or ``EgressRefused`` (both ``UserInputError``)."""
        url = render_url(
            request.base_url, request.path, request.configuration, field_prefix=field_prefix
        )
        return check_target(url, allow_loopback=self._allow_loopback)

    async def call(self, request: ProviderRequest, credential: ResolvedCredential) -> CallOutcome:
        redact = _Redactor()
        try:
            prepared = self._prepare(request, credential, redact)
            self._check_audience(prepared, credential)
        except (
            ConfigurationInvalid,
            CredentialFormatInvalid,
            EgressRefused,
            AudienceRefused,
        ) as exc:
            log.debug("provider call not sent: %s", exc.message)
            return CallOutcome(
                ok=False,
                status=None,
                latency_ms=None,
                attempts=(),
                external_ref=None,
                category=FailureCategory.CONFIGURATION,
                message=redact(exc.message),
            )
        deadline = self._clock() + request.total_timeout
        attempts: list[CallAttempt] = []
        refreshed = False
        rejected: str | None = None
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            with span("provider.call", {"http.request.method": request.method}):
                result = await self._attempt(
                    len(attempts) + 1, prepared, min(request.timeout, remaining), rejected
                )
            attempt = result.attempt
            attempts.append(attempt)
            category = attempt.category
            if category is None:
                break
            if (
                prepared.oauth is not None
                and category is FailureCategory.AUTHENTICATION
                and result.api_answered
                and result.token_from_cache
                and not refreshed
            ):
                refreshed, rejected = True, result.token
                continue
            rejected = None
            if (
                not request.is_idempotent
                or not _retryable(category, attempt.http_status)
                or len(attempts) >= request.max_attempts + int(refreshed)
            ):
                break
            delay = self._delay(len(attempts), result.retry_after)
            if delay is None or self._clock() + delay >= deadline:
                break
            await self._sleep(delay)
        return _outcome(attempts)  # the first attempt always runs: total_timeout > 0

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _check_audience(prepared: _Prepared, credential: ResolvedCredential) -> None:
        """Checked at every call, after the URLs are rendered, before anything is sent."""
        audience = credential.audience
        if audience is None:
            return
        hosts = [prepared.target.host]
        if prepared.oauth is not None:
            hosts.append(prepared.oauth.token_target.host)
        for host in hosts:
            if not audience.allows(credential.provider_id, host):
                raise AudienceRefused(host)

    def _delay(self, failures: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            return retry_after if retry_after <= self._retry_after_max else None
        ceiling = min(self._backoff_max, self._backoff_base * 2 ** (failures - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def _prepare(
        self, request: ProviderRequest, credential: ResolvedCredential, redact: _Redactor
    ) -> _Prepared:
        scheme = request.auth
        mode = credential.auth_mode
        raw = credential.secret.value.strip()
        redact.add(credential.secret.value, raw)
        headers = {"Accept": "application/json", **request.headers}
        params: list[tuple[str, str]] = list(request.params.items())
        oauth: _OAuthClient | None = None

        if mode is AuthMode.API_KEY:
            names = scheme.api_key_names
            if len(names) == 1:
                if not raw:
                    raise CredentialFormatInvalid("an API_KEY secret must be the key")
                keys = [raw]
            else:
                expected = f"a JSON object with the keys {', '.join(names)}"
                keys = _string_fields(
                    _parse_json_object(raw, mode, expected), names, mode, expected
                )
            redact.add(*keys)
            for name, key in zip(names, keys, strict=True):
                if scheme.api_key_in == "query":
                    params.append((name, key))
                else:
                    headers[name] = _prefixed(scheme.api_key_prefix, _header_safe(key, mode))
        elif mode is AuthMode.BEARER_TOKEN:
            token = _header_safe(raw, mode) if raw else ""
            if not token:
                raise CredentialFormatInvalid("a BEARER_TOKEN secret must be the token")
            headers[scheme.bearer_header] = _prefixed(scheme.bearer_prefix, token)
        elif mode is AuthMode.BASIC:
            expected = 'username:password or a JSON object {"username", "password"}'
            if raw.startswith("{"):
                data = _parse_json_object(raw, mode, expected)
                username, password = _string_fields(data, ("username", "password"), mode, expected)
            else:
                username, colon, password = raw.partition(":")
                if not colon or not username or not password:
                    raise CredentialFormatInvalid(f"a BASIC secret must be {expected}")
            if any(not c.isprintable() for c in username + password):
                raise CredentialFormatInvalid("the BASIC secret holds control characters")
            redact.add(username, password)
            header = _basic(username, password)
            redact.add(header.removeprefix("Basic "))
            headers["Authorization"] = header
        elif mode is AuthMode.OAUTH2_CLIENT_CREDENTIALS:
            expected = 'a JSON object {"client_id", "client_secret"}'
            data = _parse_json_object(raw, mode, expected)
            client_id, client_secret = _string_fields(
                data, ("client_id", "client_secret"), mode, expected
            )
            redact.add(client_secret)
            oauth = self._oauth_client(request, credential, client_id, client_secret)
        else:  # pragma: no cover - AuthMode is exhaustive
            raise CredentialFormatInvalid(f"unsupported auth mode {mode}")

        target = self.prepare_target(request)
        if params:
            target = check_target(
                target.url.copy_merge_params(tuple(params)), allow_loopback=self._allow_loopback
            )
        content = None
        if request.json_body is not None:
            content = json.dumps(request.json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        return _Prepared(request, target, headers, content, oauth, redact)

    def _oauth_client(
        self,
        request: ProviderRequest,
        credential: ResolvedCredential,
        client_id: str,
        client_secret: str,
    ) -> _OAuthClient:
        scheme = request.auth
        config = request.configuration
        template = scheme.token_url or config.get("tokenUrl")
        if not isinstance(template, str) or not template:
            raise ConfigurationInvalid(
                "OAuth2 client credentials need a token URL (the provider's or 'tokenUrl')",
                field="tokenUrl",
            )
        if template.startswith("/"):
            url = render_url(request.base_url, template, config)
        else:
            url = render_url(template, "", config)
        target = check_target(url, allow_loopback=self._allow_loopback)
        scope = scheme.scope or config.get("scope")
        scope = scope if isinstance(scope, str) and scope else None
        params = tuple(sorted(scheme.token_params.items()))
        key = (
            str(target.url),
            client_id,
            scope or "",
            urlencode(params),
            credential.secret.properties.version,
        )
        return _OAuthClient(
            target, client_id, client_secret, scope, scheme.token_client_auth, params, key
        )

    async def _attempt(
        self, number: int, prepared: _Prepared, seconds: float, rejected: str | None
    ) -> _AttemptResult:
        request = prepared.request
        redact = prepared.redact
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        result = _AttemptResult(
            CallAttempt(number, started_at, 0.0, None, FailureCategory.UNKNOWN, None)
        )
        status: int | None = None
        category: FailureCategory | None
        message: str | None = None
        address: str | None = None
        ref: str | None = None
        excerpt: str | None = None
        try:
            async with asyncio.timeout(seconds):
                headers = dict(prepared.headers)
                if prepared.oauth is not None:
                    oauth = prepared.oauth
                    token, from_cache = await self._tokens.get(
                        oauth.cache_key,
                        lambda: self._fetch_token(oauth, seconds, redact),
                        rejected=rejected,
                    )
                    redact.add(token)
                    result.token, result.token_from_cache = token, from_cache
                    auth = request.auth
                    bearer = _header_safe(token, AuthMode.OAUTH2_CLIENT_CREDENTIALS)
                    headers[auth.bearer_header] = _prefixed(auth.bearer_prefix, bearer)
                resolved = await resolve_target(
                    prepared.target, allow_loopback=self._allow_loopback, resolver=self._resolver
                )
                address = resolved.address
                http_request = resolved.build_request(
                    self._http,
                    request.method,
                    headers=headers,
                    content=prepared.content,
                    timeout=seconds,
                )
                response = await self._http.send(http_request, stream=True)
                try:
                    body = await read_capped(response, BODY_READ_LIMIT)
                finally:
                    await response.aclose()
            status = response.status_code
            result.api_answered = True
            ref = _request_id(response.headers, request.request_id_headers)
            category = classify(status=status, expect_status=request.expect_status)
            if category is not None:
                message = _status_message(status, request.expect_status)
                excerpt = redact(_excerpt(body, response)) or None
                result.retry_after = (
                    retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
                    if status in (429, 503)  # the statuses where it means "wait"
                    else None
                )
        except _TokenFailure as exc:
            status, category, message = exc.status, exc.category, exc.message
        except (ConfigurationInvalid, CredentialFormatInvalid, EgressRefused) as exc:
            category, message = FailureCategory.CONFIGURATION, exc.message
        except EgressUnresolvable as exc:
            category, message = FailureCategory.NETWORK, exc.message
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            category = _classify_error(exc)
            message = _error_message(exc, seconds)
        except Exception as exc:
            category, message = FailureCategory.UNKNOWN, f"unexpected error: {type(exc).__name__}"
            log.warning("provider call failed unexpectedly: %s", type(exc).__name__)
        latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        message = redact(message)[:MAX_MESSAGE_CHARS] if message else None
        result.attempt = CallAttempt(
            number=number,
            started_at=started_at,
            latency_ms=latency_ms,
            http_status=status,
            category=category,
            message=message,
            external_ref=ref,
            address=address,
            response_excerpt=excerpt,
        )
        log.debug(
            "provider call %s %s%s attempt %d: status=%s category=%s %.0f ms",
            request.method,
            prepared.target.host,
            prepared.target.url.path,
            number,
            status,
            category,
            latency_ms,
        )
        return result

    async def _fetch_token(
        self, oauth: _OAuthClient, seconds: float, redact: _Redactor
    ) -> tuple[str, float]:
        resolved = await resolve_target(
            oauth.token_target, allow_loopback=self._allow_loopback, resolver=self._resolver
        )
        form = {**dict(oauth.params), "grant_type": "client_credentials"}
        if oauth.scope:
            form["scope"] = oauth.scope
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        # RFC 6749 §2.3.1: form-encode each part before Basic encoding.
        basic = _basic(quote_plus(oauth.client_id), quote_plus(oauth.client_secret))
        redact.add(basic.removeprefix("Basic "))
        if oauth.client_auth == "basic":
            headers["Authorization"] = basic
        else:
            form.update(client_id=oauth.client_id, client_secret=oauth.client_secret)
        request = resolved.build_request(
            self._http,
            "POST",
            headers=headers,
            content=urlencode(form).encode(),
            timeout=seconds,
        )
        response = await self._http.send(request, stream=True)
        try:
            body = await read_capped(response, BODY_READ_LIMIT)
        finally:
            await response.aclose()
        status = response.status_code
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if status != 200:
            error = data.get("error") if isinstance(data, dict) else None
            code = error if isinstance(error, str) and _OAUTH_ERROR.match(error) else None
            category = _token_error_category(status, code)
            detail = f" ({code})" if code else ""
            raise _TokenFailure(category, f"token endpoint answered HTTP {status}{detail}", status)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(token, str) or not token:
            raise _TokenFailure(
                FailureCategory.UNKNOWN, "token endpoint answered without an access_token", status
            )
        token_type = data.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise _TokenFailure(
                FailureCategory.CONFIGURATION,
                "token endpoint issued a token that is not a bearer token",
                status,
            )
        try:
            lifetime = float(data.get("expires_in", DEFAULT_TOKEN_LIFETIME))
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        return token, max(lifetime, 0.0)


def _token_error_category(status: int, code: str | None) -> FailureCategory:
    if code in ("invalid_client", "invalid_grant"):
        return FailureCategory.AUTHENTICATION
    if code in ("unauthorized_client", "invalid_scope"):
        return FailureCategory.AUTHORIZATION
    if code in ("invalid_request", "unsupported_grant_type"):
        return FailureCategory.CONFIGURATION
    return classify(status=status, expect_status=200) or FailureCategory.UNKNOWN


# --- Helpers ----------------------------------------------------------------------------


def _excerpt(body: bytes, response: httpx.Response) -> str:
    text = body[: EXCERPT_CHARS * 4].decode(response.encoding or "utf-8", errors="replace")
    return text[:EXCERPT_CHARS]


def _request_id(headers: httpx.Headers, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            cleaned = "".join(c for c in value if c.isprintable()).strip()
            if cleaned:
                return cleaned[:MAX_REF_CHARS]
    return None


def _status_message(status: int, expect: int) -> str:
    phrase = httpx.codes.get_reason_phrase(status)
    answered = f"HTTP {status}{' ' + phrase if phrase else ''}"
    if 300 <= status <= 399:
        return f"{answered}: redirects are not followed; check the provider's base URL"
    return f"expected HTTP {expect}, got {answered}"


def _error_message(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return f"no answer within {timeout:g} s ({type(exc).__name__})"
    detail = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name


def _outcome(attempts: list[CallAttempt]) -> CallOutcome:
    final = attempts[-1]
    ref = next((a.external_ref for a in reversed(attempts) if a.external_ref), None)
    return CallOutcome(
        ok=final.ok,
        status=final.http_status,
        latency_ms=final.latency_ms,
        attempts=tuple(attempts),
        external_ref=ref,
        category=final.category,
        message=final.message,
        response_excerpt=final.response_excerpt,
    )


def _section(data: Mapping[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or set(value) - allowed:
        raise ValueError(f"authScheme.{key} must be an object with keys {sorted(allowed)}")
    return value


def _str(data: Mapping[str, Any], key: str, default: Any) -> Any:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"authScheme: '{key}' must be a string")
    return value
