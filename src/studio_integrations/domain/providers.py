"""Providers and their versioned API clients: the vendor registry and the capability matrix.

A provider is global (the shipped catalogue, ``tenant_id`` NULL: readable by every tenant,
writable by none) or owned by one tenant (``registerProvider``). A tenant registers API
clients for its own providers only: a global provider, its clients included, is changed by
the catalogue alone (``seed.catalogue``).

Validation failures are ``UserInputError``s whose ``field`` is the GraphQL input path and
whose ``code`` is one of: ``REQUIRED``, ``TOO_LONG``, ``TOO_MANY``, ``TOO_LARGE``,
``OUT_OF_RANGE``, ``INVALID_KEY``, ``DUPLICATE_KEY``, ``SHADOWS_GLOBAL_KEY``,
``INVALID_CAPABILITY``, ``INVALID_AUTH_MODE``, ``INVALID_URL``, ``INVALID_METHOD``,
``INVALID_PATH``, ``INVALID_STATUS``, ``UNKNOWN_PLACEHOLDER``, ``INVALID_JSON_SCHEMA``,
``INVALID_AUTH_SCHEME``, ``PROVIDER_NOT_FOUND``, ``GLOBAL_PROVIDER_READ_ONLY``,
``PROVIDER_DEPRECATED``, ``INVALID_ASSEMBLY``, ``INVALID_SEMVER``, ``DUPLICATE_VERSION``,
``UNDECLARED_CAPABILITY``.

Base URLs and verification paths may hold ``{placeholders}`` (Deputy's
``https://{install}.{geo}.deputy.com``); each must name a required property of the
configuration schema, so every connection's configuration can fill it in. Plain ``http`` is
accepted here (fakes and on-premises systems); the egress policy is enforced where requests
are made, not in the registry.

``authScheme`` says how each auth mode is applied (``provider_calls.AuthScheme.from_mapping``:
an ``apiKey`` header or query parameters with an optional prefix, the ``bearer`` header and
prefix, the ``oauth2`` token endpoint); null means the defaults (``X-API-Key: <key>``,
``Authorization: Bearer <token>``). A section must apply to one of the provider's auth modes
(``apiKey`` to API_KEY, ``bearer`` to BEARER_TOKEN or OAUTH2_CLIENT_CREDENTIALS, whose access
tokens it also sends, ``oauth2`` to OAUTH2_CLIENT_CREDENTIALS); placeholders of an
``oauth2.tokenUrl`` follow the base URL's rule. A scheme is static: a provider whose calls
need a session obtained by a login request first (BILL v3) cannot be described exactly, only
by its closest static form.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jsonschema import validators as jsonschema_validators
from jsonschema.exceptions import SchemaError
from sqlalchemy.ext.asyncio import AsyncSession

from studio_integrations.core.context import ActionContext
from studio_integrations.core.enums import (
    ApiClientStatus,
    AuthMode,
    ProviderCategory,
    ProviderStatus,
)
from studio_integrations.core.errors import UserInputError
from studio_integrations.core.ids import new_id, type_of
from studio_integrations.core.semver import InvalidSemVer, SemVer
from studio_integrations.domain.json_schemas import unsupported_patterns
from studio_integrations.domain.validation import ValidationErrors, flush_or_duplicate
from studio_integrations.events.envelope import EventType
from studio_integrations.events.outbox import emit_event
from studio_integrations.outbound.egress import EgressRefused, check_target
from studio_integrations.outbound.provider_calls import PLACEHOLDER, AuthScheme
from studio_integrations.persistence.models import ExternalApiClient, Provider
from studio_integrations.persistence.providers import ApiClientFilter as ApiClientFilter
from studio_integrations.persistence.providers import ApiClientRepository, ProviderRepository
from studio_integrations.persistence.providers import ProviderFilter as ProviderFilter
from studio_integrations.persistence.repository import (
    MAX_PAGE_SIZE,
    Page,
    PageRequest,
)

# --- Limits ------------------------------------------------------------------------------

MAX_KEY_LENGTH = 64
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_URL_LENGTH = 2048
MAX_PATH_LENGTH = 1000
MAX_CAPABILITIES = 100
MAX_CAPABILITY_LENGTH = 100
MAX_ASSEMBLY_LENGTH = 200
MAX_SEARCH_LENGTH = 200
MAX_SCHEMA_BYTES = 32 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_PATTERN_ERRORS = 5
MAX_AUTH_SCHEME_BYTES = 4 * 1024
MAX_AUTH_SCHEME_DEPTH = 4  # {"oauth2": {"params": {"audience": "..."}}}
MAX_API_KEY_NAMES = 10
MAX_AUTH_NAME_LENGTH = 100
MAX_TOKEN_PARAMS = 20
MIN_LATENCY_THRESHOLD_MS = 50
MAX_LATENCY_THRESHOLD_MS = 60_000
DEFAULT_LATENCY_THRESHOLD_MS = 2000
# ``capabilityMatrix`` without ``providerIds`` covers every visible provider, up to this many.
MAX_MATRIX_PROVIDERS = 500

VERIFICATION_METHODS = frozenset({"GET", "HEAD", "POST"})
DEFAULT_CONFIGURATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}

# The auth modes each ``authScheme`` section applies to.
AUTH_SCHEME_SECTIONS: dict[str, frozenset[AuthMode]] = {
    "apiKey": frozenset({AuthMode.API_KEY}),
    "bearer": frozenset({AuthMode.BEARER_TOKEN, AuthMode.OAUTH2_CLIENT_CREDENTIALS}),
    "oauth2": frozenset({AuthMode.OAUTH2_CLIENT_CREDENTIALS}),
}
# Headers that frame or route the request: never a place for a credential.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
)
# Token request fields the caller sets itself.
_RESERVED_TOKEN_PARAMS = frozenset({"grant_type", "scope", "client_id", "client_secret"})
# URL-unreserved characters, and brackets for names like ``auth[key]``.
_QUERY_NAME = re.compile(r"^[A-Za-z0-9._~\[\]-]+$")

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
# ``resource.action`` tokens, lowercase, e.g. ``employees.read``, ``campaigns.trigger``.
CAPABILITY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")
# A dotted .NET assembly name of at least two identifiers, e.g. ``ConnectSoft.Deputy.ApiClient``.
ASSEMBLY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")

_KNOWN_DIALECTS = {
    str(v.META_SCHEMA.get("$id") or v.META_SCHEMA.get("id")).rstrip("#"): v
    for v in (
        jsonschema_validators.Draft4Validator,
        jsonschema_validators.Draft6Validator,
        jsonschema_validators.Draft7Validator,
        jsonschema_validators.Draft201909Validator,
        jsonschema_validators.Draft202012Validator,
    )
}


# --- Definitions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """The cheap authenticated call used by connection tests and health probes."""

    method: str = "GET"
    path: str = "/"
    expect_status: int = 200

    def to_document(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "expectStatus": self.expect_status}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> VerificationRequest:
        return cls(
            method=str(doc.get("method", "GET")),
            path=str(doc.get("path", "/")),
            expect_status=int(doc.get("expectStatus", 200)),
        )


@dataclass(frozen=True, slots=True)
class ProviderDefinition:
    """What a provider is, as registered or as shipped in the catalogue."""

    key: str
    name: str
    category: ProviderCategory | str
    capabilities: Sequence[str]
    auth_modes: Sequence[AuthMode | str]
    base_url: str
    verification: VerificationRequest
    configuration_schema: Any = None
    description: str | None = None
    latency_threshold_ms: int | None = None
    documentation_url: str | None = None
    auth_scheme: Mapping[str, Any] | None = None  # camelCase, see ``AuthScheme.from_mapping``


@dataclass(frozen=True, slots=True)
class ApiClientDefinition:
    provider_id: str
    assembly: str
    version: str
    capabilities: Sequence[str]
    status: ApiClientStatus = ApiClientStatus.PREVIEW


# --- Validation --------------------------------------------------------------------------


def _text(
    errors: ValidationErrors, field: str, value: str | None, *, limit: int, required: bool = True
) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            errors.add(field, "REQUIRED", "must not be blank")
        return None
    if len(text) > limit:
        errors.add(field, "TOO_LONG", f"must be at most {limit} characters")
        return None
    return text


def check_capabilities(errors: ValidationErrors, field: str, values: Sequence[str]) -> list[str]:
    if not values:
        errors.add(field, "REQUIRED", "declare at least one capability")
        return []
    if len(values) > MAX_CAPABILITIES:
        errors.add(field, "TOO_MANY", f"at most {MAX_CAPABILITIES} capabilities")
        return []
    bad = [
        v for v in values if len(v) > MAX_CAPABILITY_LENGTH or not CAPABILITY_PATTERN.fullmatch(v)
    ]
    if bad:
        shown = ", ".join(repr(v[:MAX_CAPABILITY_LENGTH]) for v in bad[:5])
        errors.add(
            field,
            "INVALID_CAPABILITY",
            f"capabilities are lowercase dotted resource.action tokens "
            f"(e.g. employees.read); not {shown}",
        )
        return []
    return sorted(set(values))


def _auth_modes(
    errors: ValidationErrors, field: str, values: Sequence[AuthMode | str]
) -> list[AuthMode]:
    if not values:
        errors.add(field, "REQUIRED", "declare at least one auth mode")
        return []
    modes: list[AuthMode] = []
    for value in values[: len(AuthMode) * 4]:
        try:
            mode = AuthMode(value)
        except ValueError:
            errors.add(field, "INVALID_AUTH_MODE", f"unknown auth mode {str(value)[:40]!r}")
            return []
        if mode not in modes:
            modes.append(mode)
    return modes


def _placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def _without_placeholders(template: str) -> str:
    return PLACEHOLDER.sub("0", template)


def check_base_url_egress(base_url: str, *, allow_loopback: bool) -> None:
    """``EGRESS_REFUSED`` on ``input.baseUrl`` for a URL the egress policy refuses without
    the network (scheme, literal private/loopback/metadata addresses, userinfo, ports).
    Placeholders stand for a DNS label here, so only what the template itself fixes is
    judged; the rendered, resolved URL is checked again on every call."""
    concrete = PLACEHOLDER.sub("x0", _TEMPLATED_PORT.sub(":443", base_url, count=1))
    try:
        check_target(concrete, allow_loopback=allow_loopback)
    except EgressRefused as exc:
        raise EgressRefused(exc.message, reason=exc.reason, field="input.baseUrl") from None


# A placeholder in the port position: judged once rendered.
_TEMPLATED_PORT = re.compile(r"(?<=[\w\]}]):\{[A-Za-z_][A-Za-z0-9_]*\}(?=/|$)")


def _url(
    errors: ValidationErrors,
    field: str,
    value: str | None,
    *,
    templated: bool,
    required: bool = True,
) -> str | None:
    text = _text(errors, field, value, limit=MAX_URL_LENGTH, required=required)
    if text is None:
        return None
    concrete = _without_placeholders(text) if templated else text
    parts = urlsplit(concrete)
    problem: str | None = None
    if any(c.isspace() for c in concrete) or "{" in concrete or "}" in concrete:
        problem = "must not contain spaces or unmatched braces"
    elif parts.scheme not in ("https", "http") or not parts.hostname:
        problem = "must be an absolute http(s) URL, e.g. https://api.example.com"
    elif parts.username is not None or parts.password is not None:
        problem = "must not carry credentials: bind a credential to the connection instead"
    elif parts.query or parts.fragment:
        problem = "must not have a query or fragment"
    else:
        try:
            parts.port  # noqa: B018  (raises on a malformed port)
        except ValueError:
            problem = "has an invalid port"
    if problem:
        errors.add(field, "INVALID_URL", problem)
        return None
    return text


def _verification(
    errors: ValidationErrors, value: VerificationRequest
) -> VerificationRequest | None:
    method = (value.method or "").strip().upper()
    ok = True
    if method not in VERIFICATION_METHODS:
        errors.add(
            "input.verification.method",
            "INVALID_METHOD",
            f"must be one of {', '.join(sorted(VERIFICATION_METHODS))}",
        )
        ok = False
    path = (value.path or "").strip()
    concrete = _without_placeholders(path)
    if (
        not path.startswith("/")
        or len(path) > MAX_PATH_LENGTH
        or "://" in path
        or "#" in concrete
        or "{" in concrete
        or "}" in concrete
        or any(c.isspace() for c in concrete)
    ):
        errors.add(
            "input.verification.path",
            "INVALID_PATH",
            f"must be a path relative to the base URL starting with '/' "
            f"(at most {MAX_PATH_LENGTH} characters), e.g. /api/v1/me",
        )
        ok = False
    if not 200 <= value.expect_status <= 299:
        errors.add("input.verification.expectStatus", "INVALID_STATUS", "must be a 2xx HTTP status")
        ok = False
    return VerificationRequest(method, path, value.expect_status) if ok else None


def _document_shape(doc: Any) -> tuple[int, int]:
    """Depth and node count, iteratively (a deep document must not exhaust the stack)."""
    depth = nodes = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, level = stack.pop()
        nodes += 1
        depth = max(depth, level)
        if depth > MAX_SCHEMA_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, level + 1) for v in value)
    return depth, nodes


def check_configuration_schema(
    errors: ValidationErrors, field: str, schema: Any
) -> dict[str, Any] | None:
    """A JSON Schema (Draft 2020-12 unless ``$schema`` names another) for an object."""
    if schema is None:
        return dict(DEFAULT_CONFIGURATION_SCHEMA)
    if not isinstance(schema, dict):
        errors.add(field, "INVALID_JSON_SCHEMA", "must be a JSON Schema object")
        return None
    depth, _ = _document_shape(schema)
    if depth > MAX_SCHEMA_DEPTH:
        errors.add(field, "TOO_LARGE", f"must not nest deeper than {MAX_SCHEMA_DEPTH} levels")
        return None
    if len(json.dumps(schema, separators=(",", ":"))) > MAX_SCHEMA_BYTES:
        errors.add(field, "TOO_LARGE", f"must be at most {MAX_SCHEMA_BYTES} bytes as JSON")
        return None
    dialect = schema.get("$schema")
    if dialect is not None and (
        not isinstance(dialect, str) or dialect.rstrip("#") not in _KNOWN_DIALECTS
    ):
        errors.add(
            field,
            "INVALID_JSON_SCHEMA",
            "$schema must name a JSON Schema dialect (draft-04 to 2020-12)",
        )
        return None
    validator = (
        _KNOWN_DIALECTS[dialect.rstrip("#")]
        if isinstance(dialect, str)
        else jsonschema_validators.Draft202012Validator
    )
    try:
        validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        errors.add(
            field,
            "INVALID_JSON_SCHEMA",
            f"not a valid JSON Schema: {exc.message[:300]}" + (f" (at /{where})" if where else ""),
        )
        return None
    if schema.get("type") != "object":
        errors.add(field, "INVALID_JSON_SCHEMA", 'must describe an object ("type": "object")')
        return None
    unsupported = unsupported_patterns(schema)
    for where, why in unsupported[:MAX_PATTERN_ERRORS]:
        errors.add(
            field,
            "UNSUPPORTED_PATTERN",
            f"patterns must be RE2 syntax (no backreferences or look-around): {why[:200]}"
            + f" (at {where[:200]})",
        )
    return None if unsupported else schema


def _unfillable_placeholders(schema: Mapping[str, Any], template: str) -> list[str]:
    """Placeholders of ``template`` that are not required properties of ``schema``."""
    properties = schema.get("properties")
    required = schema.get("required")
    declared = set(properties) if isinstance(properties, dict) else set()
    needed = set(required) if isinstance(required, list) else set()
    return sorted(p for p in _placeholders(template) if p not in declared & needed)


def _check_placeholders(
    errors: ValidationErrors, schema: Mapping[str, Any], base_url: str, path: str
) -> None:
    for where, template in (("input.baseUrl", base_url), ("input.verification.path", path)):
        missing = _unfillable_placeholders(schema, template)
        if missing:
            errors.add(
                where,
                "UNKNOWN_PLACEHOLDER",
                f"placeholder(s) {', '.join(missing)} must be required properties "
                f"of the configuration schema",
            )


class _SchemeProblem(Exception):
    def __init__(self, message: str, code: str = "INVALID_AUTH_SCHEME") -> None:
        super().__init__(message)
        self.code = code


def _scheme_names(api_key: Mapping[str, Any], where: str) -> None:
    names = api_key.get("names", [])
    if len(names) > MAX_API_KEY_NAMES:
        raise _SchemeProblem(f"apiKey.names: at most {MAX_API_KEY_NAMES} names")
    if any(len(n) > MAX_AUTH_NAME_LENGTH for n in names):
        raise _SchemeProblem(f"apiKey.names: at most {MAX_AUTH_NAME_LENGTH} characters each")
    folded = [n.lower() for n in names] if where == "header" else list(names)
    if len(set(folded)) != len(folded):
        raise _SchemeProblem("apiKey.names must not repeat a name")
    if where == "header" and set(folded) & _RESERVED_HEADERS:
        raise _SchemeProblem("apiKey.names must not name a header that frames the request")
    if where == "query" and api_key.get("prefix"):
        raise _SchemeProblem("apiKey.prefix applies to headers only")
    if where == "query" and not all(_QUERY_NAME.match(n) for n in names):
        raise _SchemeProblem(
            "apiKey.names must be query parameter names of letters, digits and ._~-[]"
        )


def _scheme_token_url(value: str, schema: Mapping[str, Any] | None) -> None:
    concrete = _without_placeholders(value)
    if (
        len(value) > MAX_URL_LENGTH
        or any(c.isspace() for c in concrete)
        or "{" in concrete
        or "}" in concrete
    ):
        raise _SchemeProblem(
            f"oauth2.tokenUrl must be at most {MAX_URL_LENGTH} characters, without spaces "
            f"or unmatched braces"
        )
    if value.startswith("/"):
        if value.startswith("//") or "#" in concrete or "?" in concrete:
            raise _SchemeProblem(
                "oauth2.tokenUrl must be an absolute http(s) URL or a path on the base URL"
            )
    else:
        parts = urlsplit(concrete)
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
        ):
            raise _SchemeProblem(
                "oauth2.tokenUrl must be an absolute http(s) URL without credentials, query "
                "or fragment, or a path on the base URL"
            )
    missing = _unfillable_placeholders(schema, value) if schema is not None else []
    if missing:
        raise _SchemeProblem(
            f"oauth2.tokenUrl placeholder(s) {', '.join(missing)} must be required "
            f"properties of the configuration schema",
            code="UNKNOWN_PLACEHOLDER",
        )


def _scheme_oauth2(oauth2: Mapping[str, Any], schema: Mapping[str, Any] | None) -> None:
    token_url = oauth2.get("tokenUrl")
    if isinstance(token_url, str):
        _scheme_token_url(token_url, schema)
    scope = oauth2.get("scope")
    if isinstance(scope, str) and len(scope) > MAX_DESCRIPTION_LENGTH:
        raise _SchemeProblem(f"oauth2.scope must be at most {MAX_DESCRIPTION_LENGTH} characters")
    params = oauth2.get("params")
    if isinstance(params, dict):
        if len(params) > MAX_TOKEN_PARAMS:
            raise _SchemeProblem(f"oauth2.params: at most {MAX_TOKEN_PARAMS} parameters")
        reserved = sorted(set(params) & _RESERVED_TOKEN_PARAMS)
        if reserved:
            raise _SchemeProblem(
                f"oauth2.params must not set {', '.join(reserved)}: the token request sets it"
            )
        if any(not k or len(k) > MAX_AUTH_NAME_LENGTH for k in params):
            raise _SchemeProblem(
                f"oauth2.params names must be 1 to {MAX_AUTH_NAME_LENGTH} characters"
            )


def check_auth_scheme(
    errors: ValidationErrors,
    field: str,
    value: Any,
    auth_modes: Sequence[AuthMode],
    schema: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The normalised ``authScheme`` (the non-empty sections, as given) or None for the
    defaults; every problem is one ``INVALID_AUTH_SCHEME`` error (``TOO_LARGE`` past the
    size cap, ``UNKNOWN_PLACEHOLDER`` for a token URL placeholder the configuration cannot
    fill). ``auth_modes`` empty (itself an error) skips the section-to-mode check."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add(
            field,
            "INVALID_AUTH_SCHEME",
            "must be a JSON object with apiKey, bearer and/or oauth2 sections",
        )
        return None
    depth, _ = _document_shape(value)
    if depth > MAX_AUTH_SCHEME_DEPTH:
        errors.add(field, "TOO_LARGE", f"must not nest deeper than {MAX_AUTH_SCHEME_DEPTH} levels")
        return None
    if len(json.dumps(value, separators=(",", ":"))) > MAX_AUTH_SCHEME_BYTES:
        errors.add(field, "TOO_LARGE", f"must be at most {MAX_AUTH_SCHEME_BYTES} bytes as JSON")
        return None
    try:
        # from_mapping treats a falsy section (null, [], "") as absent: only objects here.
        for name in AUTH_SCHEME_SECTIONS:
            if name in value and not isinstance(value[name], dict):
                raise _SchemeProblem(f"{name} must be an object")
        try:
            scheme = AuthScheme.from_mapping(value)
        except ValueError as exc:
            raise _SchemeProblem(str(exc)) from exc
        sections = {
            name: copy.deepcopy(value[name]) for name in AUTH_SCHEME_SECTIONS if value.get(name)
        }
        if auth_modes:
            for name, modes in AUTH_SCHEME_SECTIONS.items():
                if name in sections and not modes & set(auth_modes):
                    listed = " or ".join(sorted(m.value for m in modes))
                    raise _SchemeProblem(
                        f"the {name} section applies to {listed}, which authModes does not list"
                    )
        if "apiKey" in sections:
            _scheme_names(sections["apiKey"], scheme.api_key_in)
        if "bearer" in sections and scheme.bearer_header.lower() in _RESERVED_HEADERS:
            raise _SchemeProblem("bearer.header must not name a header that frames the request")
        if "oauth2" in sections:
            _scheme_oauth2(sections["oauth2"], schema)
    except _SchemeProblem as problem:
        errors.add(field, problem.code, str(problem))
        return None
    return sections or None


@dataclass(frozen=True, slots=True)
class CheckedProvider:
    key: str
    name: str
    category: ProviderCategory
    capabilities: list[str]
    auth_modes: list[AuthMode]
    base_url: str
    verification: VerificationRequest
    configuration_schema: dict[str, Any]
    description: str | None
    latency_threshold_ms: int
    documentation_url: str | None
    auth_scheme: dict[str, Any] | None = None


def check_provider(definition: ProviderDefinition) -> CheckedProvider:
    """Validate and normalise a provider definition; raise every failure at once."""
    errors = ValidationErrors()
    key = (definition.key or "").strip()
    if not key:
        errors.add("input.key", "REQUIRED", "must not be blank")
    elif len(key) > MAX_KEY_LENGTH or len(key) < 2 or not KEY_PATTERN.fullmatch(key):
        errors.add(
            "input.key",
            "INVALID_KEY",
            f"2 to {MAX_KEY_LENGTH} lowercase letters and digits, words joined by '-' or '_'",
        )
    name = _text(errors, "input.name", definition.name, limit=MAX_NAME_LENGTH)
    try:
        category = ProviderCategory(definition.category)
    except ValueError:
        errors.add("input.category", "INVALID_CATEGORY", "unknown category")
        category = ProviderCategory.OTHER
    description = _text(
        errors,
        "input.description",
        definition.description,
        limit=MAX_DESCRIPTION_LENGTH,
        required=False,
    )
    capabilities = check_capabilities(errors, "input.capabilities", definition.capabilities)
    auth_modes = _auth_modes(errors, "input.authModes", definition.auth_modes)
    base_url = _url(errors, "input.baseUrl", definition.base_url, templated=True)
    documentation_url = _url(
        errors,
        "input.documentationUrl",
        definition.documentation_url,
        templated=False,
        required=False,
    )
    verification = _verification(errors, definition.verification)
    threshold = definition.latency_threshold_ms
    if threshold is None:
        threshold = DEFAULT_LATENCY_THRESHOLD_MS
    elif not MIN_LATENCY_THRESHOLD_MS <= threshold <= MAX_LATENCY_THRESHOLD_MS:
        errors.add(
            "input.latencyThresholdMs",
            "OUT_OF_RANGE",
            f"must be between {MIN_LATENCY_THRESHOLD_MS} and {MAX_LATENCY_THRESHOLD_MS} ms",
        )
    schema = check_configuration_schema(
        errors, "input.configurationSchema", definition.configuration_schema
    )
    if schema is not None and base_url is not None and verification is not None:
        _check_placeholders(errors, schema, base_url, verification.path)
    auth_scheme = check_auth_scheme(
        errors, "input.authScheme", definition.auth_scheme, auth_modes, schema
    )
    errors.raise_any()
    # raise_any() returned: every check passed, so none of these is None.
    assert name is not None
    assert base_url is not None
    assert verification is not None
    assert schema is not None
    return CheckedProvider(
        key=key,
        name=name,
        category=category,
        capabilities=capabilities,
        auth_modes=auth_modes,
        base_url=base_url,
        verification=verification,
        configuration_schema=schema,
        description=description,
        latency_threshold_ms=threshold,
        documentation_url=documentation_url,
        auth_scheme=auth_scheme,
    )


@dataclass(frozen=True, slots=True)
class CheckedApiClient:
    assembly: str
    version: SemVer
    capabilities: list[str]
    status: ApiClientStatus


def check_api_client(
    *,
    assembly: str,
    version: str,
    capabilities: Sequence[str],
    status: ApiClientStatus | str,
    provider_capabilities: Sequence[str],
) -> CheckedApiClient:
    """Validate a client against its provider (no database: the catalogue uses it too)."""
    errors = ValidationErrors()
    name = (assembly or "").strip()
    if not name:
        errors.add("input.assembly", "REQUIRED", "must not be blank")
    elif len(name) > MAX_ASSEMBLY_LENGTH or not ASSEMBLY_PATTERN.fullmatch(name):
        errors.add(
            "input.assembly",
            "INVALID_ASSEMBLY",
            "must be a dotted .NET assembly name, e.g. ConnectSoft.Deputy.ApiClient",
        )
    semver: SemVer | None = None
    try:
        semver = SemVer.parse((version or "").strip())
    except InvalidSemVer as exc:
        errors.add("input.version", "INVALID_SEMVER", str(exc))
    checked = check_capabilities(errors, "input.capabilities", capabilities)
    undeclared = sorted(set(checked) - set(provider_capabilities))
    if undeclared:
        errors.add(
            "input.capabilities",
            "UNDECLARED_CAPABILITY",
            f"the provider does not declare {', '.join(undeclared)}",
        )
    try:
        client_status = ApiClientStatus(status)
    except ValueError:
        errors.add("input.status", "INVALID_STATUS", "unknown API client status")
        client_status = ApiClientStatus.PREVIEW
    errors.raise_any()
    assert semver is not None
    return CheckedApiClient(
        assembly=name, version=semver, capabilities=checked, status=client_status
    )


# --- Queries -----------------------------------------------------------------------------


def check_provider_filter(flt: ProviderFilter) -> ProviderFilter:
    if flt.search is not None and len(flt.search) > MAX_SEARCH_LENGTH:
        raise UserInputError(
            f"search must be at most {MAX_SEARCH_LENGTH} characters",
            field="filter.search",
            code="TOO_LONG",
        )
    if flt.capability is not None and not CAPABILITY_PATTERN.fullmatch(flt.capability):
        raise UserInputError(
            "capability is a lowercase dotted resource.action token",
            field="filter.capability",
            code="INVALID_CAPABILITY",
        )
    return flt


async def list_providers(
    session: AsyncSession, flt: ProviderFilter, page: PageRequest
) -> Page[Provider]:
    return await ProviderRepository(session).search(check_provider_filter(flt), page)


async def list_api_clients(
    session: AsyncSession, flt: ApiClientFilter, page: PageRequest
) -> Page[ExternalApiClient]:
    if flt.assembly is not None and len(flt.assembly) > MAX_ASSEMBLY_LENGTH:
        raise UserInputError(
            f"assembly must be at most {MAX_ASSEMBLY_LENGTH} characters",
            field="filter.assembly",
            code="TOO_LONG",
        )
    return await ApiClientRepository(session).search(flt, page)


async def api_clients_for_providers(
    session: AsyncSession, provider_ids: Sequence[str]
) -> dict[str, list[ExternalApiClient]]:
    return await ApiClientRepository(session).for_providers(provider_ids)


@dataclass(frozen=True, slots=True)
class CapabilityMatrixRow:
    provider: Provider
    api_client: ExternalApiClient | None
    supported: frozenset[str]


@dataclass(frozen=True, slots=True)
class CapabilityMatrix:
    capabilities: list[str]
    rows: list[CapabilityMatrixRow]
    providers: list[Provider] = field(default_factory=list)
    clients_by_provider: dict[str, list[ExternalApiClient]] = field(default_factory=dict)


async def capability_matrix(
    session: AsyncSession, provider_ids: Sequence[str] | None = None
) -> CapabilityMatrix:
    """Rows per provider and per client (SemVer order), columns per capability.

    Two statements however many providers: the providers, then all their clients.
    Ids that are not visible (another tenant's, or nothing) are left out, as ``node`` would.
    """
    if provider_ids is not None:
        if len(provider_ids) > MAX_PAGE_SIZE:
            raise UserInputError(
                f"at most {MAX_PAGE_SIZE} provider ids", field="providerIds", code="TOO_MANY"
            )
        provider_ids = [i for i in provider_ids if type_of(i) == "Provider"]
    providers = await ProviderRepository(session).visible(
        provider_ids, limit=MAX_MATRIX_PROVIDERS + 1
    )
    if len(providers) > MAX_MATRIX_PROVIDERS:
        raise UserInputError(
            f"more than {MAX_MATRIX_PROVIDERS} providers: pass providerIds",
            field="providerIds",
            code="TOO_MANY",
        )
    clients = await api_clients_for_providers(session, [p.id for p in providers])
    rows: list[CapabilityMatrixRow] = []
    columns: set[str] = set()
    for provider in providers:
        columns.update(provider.capabilities)
        rows.append(CapabilityMatrixRow(provider, None, frozenset(provider.capabilities)))
        for client in clients.get(provider.id, []):
            columns.update(client.capabilities)
            rows.append(CapabilityMatrixRow(provider, client, frozenset(client.capabilities)))
    return CapabilityMatrix(
        capabilities=sorted(columns),
        rows=rows,
        providers=providers,
        clients_by_provider={p.id: clients.get(p.id, []) for p in providers},
    )


# --- Governed actions --------------------------------------------------------------------


async def register_provider(
    session: AsyncSession,
    ctx: ActionContext,
    *,
    definition: ProviderDefinition,
    allow_loopback: bool = False,
) -> Provider:
    """A tenant-owned provider; emits ``ProviderRegistered`` in the same transaction. Its
    base URL passes the egress policy when saved, like a webhook endpoint (and again, resolved,
    on every call)."""
    checked = check_provider(definition)
    check_base_url_egress(checked.base_url, allow_loopback=allow_loopback)
    repo = ProviderRepository(session)
    for existing in await repo.by_key(checked.key):
        if existing.tenant_id is None:
            raise UserInputError(
                f"'{checked.key}' is a global catalogue provider; choose another key",
                field="input.key",
                code="SHADOWS_GLOBAL_KEY",
            )
        raise UserInputError(
            f"a provider with key '{checked.key}' already exists",
            field="input.key",
            code="DUPLICATE_KEY",
        )
    # Only a scheme is written: an explicit None would be stored as JSON null, not SQL NULL.
    scheme = {} if checked.auth_scheme is None else {"auth_scheme": checked.auth_scheme}
    provider = repo.add(
        Provider(
            id=new_id("Provider"),
            tenant_id=ctx.tenant_id,
            key=checked.key,
            name=checked.name,
            category=checked.category.value,
            description=checked.description,
            capabilities=checked.capabilities,
            auth_modes=[m.value for m in checked.auth_modes],
            status=ProviderStatus.ACTIVE,
            base_url=checked.base_url,
            verification=checked.verification.to_document(),
            configuration_schema=checked.configuration_schema,
            latency_threshold_ms=checked.latency_threshold_ms,
            documentation_url=checked.documentation_url,
            **scheme,
        )
    )
    await flush_or_duplicate(
        session, "input.key", "DUPLICATE_KEY", f"a provider with key '{checked.key}' exists"
    )
    emit_event(
        session,
        ctx,
        type=EventType.PROVIDER_REGISTERED,
        subject_type="Provider",
        subject_id=provider.id,
        data={
            "key": provider.key,
            "name": provider.name,
            "category": provider.category,
            "capabilities": provider.capabilities,
            "authModes": provider.auth_modes,
            "authScheme": checked.auth_scheme,
        },
    )
    return provider


async def register_api_client(
    session: AsyncSession, ctx: ActionContext, *, definition: ApiClientDefinition
) -> ExternalApiClient:
    """A client version of one of the tenant's own providers; emits
    ``ExternalApiClientRegistered`` in the same transaction."""
    provider = (
        await ProviderRepository(session).get(definition.provider_id)
        if type_of(definition.provider_id) == "Provider"
        else None
    )
    if provider is None:
        raise UserInputError(
            "no such provider", field="input.providerId", code="PROVIDER_NOT_FOUND"
        )
    if provider.tenant_id is None:
        raise UserInputError(
            "global catalogue providers are read-only; register your own provider",
            field="input.providerId",
            code="GLOBAL_PROVIDER_READ_ONLY",
        )
    if provider.status != ProviderStatus.ACTIVE:
        raise UserInputError(
            "the provider is deprecated", field="input.providerId", code="PROVIDER_DEPRECATED"
        )
    checked = check_api_client(
        assembly=definition.assembly,
        version=definition.version,
        capabilities=definition.capabilities,
        status=definition.status,
        provider_capabilities=provider.capabilities,
    )
    repo = ApiClientRepository(session)
    for existing in await repo.versions_of(provider.id, checked.assembly):
        if SemVer.parse(existing.version) == checked.version:
            raise UserInputError(
                f"{checked.assembly} {existing.version} is already registered "
                f"(versions differing only in build metadata have equal precedence)",
                field="input.version",
                code="DUPLICATE_VERSION",
            )
    client = repo.add(
        ExternalApiClient(
            id=new_id("ExternalApiClient"),
            tenant_id=ctx.tenant_id,
            provider_id=provider.id,
            assembly=checked.assembly,
            version=str(checked.version),
            version_sort_key=checked.version.sort_key,
            capabilities=checked.capabilities,
            status=checked.status,
        )
    )
    await flush_or_duplicate(
        session, "input.version", "DUPLICATE_VERSION", "this version is already registered"
    )
    emit_event(
        session,
        ctx,
        type=EventType.EXTERNAL_API_CLIENT_REGISTERED,
        subject_type="ExternalApiClient",
        subject_id=client.id,
        data={
            "providerId": provider.id,
            "providerKey": provider.key,
            "assembly": client.assembly,
            "version": client.version,
            "capabilities": client.capabilities,
            "status": client.status.value,
        },
    )
    return client
