"""GraphQL over HTTP beyond Strawberry: trusted documents (Apollo APQ) and the
``application/graphql-response+json`` media type.

Trusted documents (``STUDIO_TRUSTED_DOCUMENTS``):

- ``apq`` (default): Apollo's Automatic Persisted Queries. A request may carry
  ``extensions.persistedQuery = {version: 1, sha256Hash}`` instead of its ``query`` (POST, or
  GET with ``extensions`` as a JSON query parameter). An unknown hash answers
  ``PERSISTED_QUERY_NOT_FOUND``, and the client sends the query with its hash once; the hash
  must be the SHA-256 of the text (else ``PERSISTED_QUERY_HASH_MISMATCH``), and the document is
  kept in the database (``trusted_documents``) for every replica.
- ``allowlist``: only documents registered with ``studio-integrations documents register``
  run, by hash or by text; anything else is refused with ``PERSISTED_QUERY_NOT_ALLOWED``.
  (GraphiQL's own queries are refused too: register what you need, or use ``apq``.)
- ``off``: ``persistedQuery`` is refused with ``PERSISTED_QUERY_NOT_SUPPORTED``.

A persisted document runs exactly as its text would: same parser and validation caches (keyed
by the text the hash names), guards, limits and errors.

Media types: a request whose ``Accept`` names ``application/graphql-response+json`` is
answered in it with the spec's status codes — 4xx when the request fails before execution
(unparsable, invalid, over a limit, refused document), 200 once execution started — and a
request error has no ``data`` entry. Plain ``application/json`` keeps the legacy behaviour
(200 with ``errors``; Apollo's ``PERSISTED_QUERY_NOT_FOUND`` is a 200 there, as its clients
expect).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from enum import StrEnum
from typing import Any

from starlette.datastructures import Headers
from strawberry.types import ExecutionResult

from studio_integrations.persistence.documents import DocumentStore, document_hash

GRAPHQL_RESPONSE_MEDIA_TYPE = "application/graphql-response+json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class TrustedDocumentsMode(StrEnum):
    OFF = "off"
    APQ = "apq"
    ALLOWLIST = "allowlist"


class DocumentRefused(Exception):
    """A persisted-document request refused before execution. ``status`` is the
    graphql-response+json status; ``legacy_status`` the one for plain application/json."""

    def __init__(self, code: str, message: str, *, status: int = 400, legacy_status: int = 400):
        super().__init__(message)
        self.code, self.message = code, message
        self.status, self.legacy_status = status, legacy_status


def not_found() -> DocumentRefused:
    return DocumentRefused("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", legacy_status=200)


def not_allowed() -> DocumentRefused:
    return DocumentRefused(
        "PERSISTED_QUERY_NOT_ALLOWED",
        "only registered documents may run on this server (STUDIO_TRUSTED_DOCUMENTS=allowlist)",
        status=403,
        legacy_status=403,
    )


class TrustedDocuments:
    """Resolves a request's document from its text and/or ``persistedQuery`` hash."""

    def __init__(self, store: DocumentStore, mode: TrustedDocumentsMode, *, cache_size: int = 1024):
        self.store = store
        self.mode = mode
        self._cache_size = cache_size
        # sha256 -> (body, registered): positive look-ups only, so a document registered
        # while the server runs is found on its first use.
        self._known: OrderedDict[str, tuple[str, bool]] = OrderedDict()

    async def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> str | None:
        """The text to execute (``None`` when the request names none: Strawberry refuses
        it), or ``DocumentRefused``."""
        sha256 = _persisted_hash(extensions)
        if sha256 is None:
            if self.mode is TrustedDocumentsMode.ALLOWLIST and query is not None:
                await self._require_registered(document_hash(query))
            return query
        if self.mode is TrustedDocumentsMode.OFF:
            raise DocumentRefused(
                "PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported", legacy_status=200
            )
        if query is not None:
            if document_hash(query) != sha256:
                raise DocumentRefused(
                    "PERSISTED_QUERY_HASH_MISMATCH", "provided sha does not match query"
                )
            if self.mode is TrustedDocumentsMode.ALLOWLIST:
                await self._require_registered(sha256)
            elif _storable(query) and await self._lookup(sha256) is None:
                await self.store.learn(sha256, query)
                self._remember(sha256, query, registered=False)
            return query
        found = await self._lookup(sha256)
        if self.mode is TrustedDocumentsMode.ALLOWLIST:
            if found is None or not found[1]:
                raise not_allowed()
        elif found is None:
            raise not_found()
        assert found is not None
        return found[0]

    async def _require_registered(self, sha256: str) -> None:
        found = await self._lookup(sha256)
        if found is None or not found[1]:
            raise not_allowed()

    async def _lookup(self, sha256: str) -> tuple[str, bool] | None:
        found = self._known.get(sha256)
        if found is not None and found[1]:
            self._known.move_to_end(sha256)
            return found
        stored = await self.store.get(sha256)
        if stored is None:
            return found
        self._remember(sha256, stored.body, registered=stored.registered)
        return stored.body, stored.registered

    def _remember(self, sha256: str, body: str, *, registered: bool) -> None:
        self._known[sha256] = (body, registered)
        self._known.move_to_end(sha256)
        while len(self._known) > self._cache_size:
            self._known.popitem(last=False)


def _storable(query: str) -> bool:
    """Text PostgreSQL can keep: no U+0000, no lone surrogates. (Such a document still runs,
    and is refused there with its own error; it is just not remembered.)"""
    if "\x00" in query:
        return False
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _persisted_hash(extensions: dict[str, Any] | None) -> str | None:
    if not extensions or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
        or not _SHA256.fullmatch(persisted["sha256Hash"])
    ):
        raise DocumentRefused(
            "BAD_REQUEST",
            "extensions.persistedQuery must be {version: 1, sha256Hash: <64 lowercase hex>}",
        )
    sha256: str = persisted["sha256Hash"]
    return sha256


def wants_graphql_response(headers: Headers) -> bool:
    """Whether ``Accept`` names application/graphql-response+json (with a non-zero q)."""
    for part in headers.get("accept", "").split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() != GRAPHQL_RESPONSE_MEDIA_TYPE:
            continue
        q = re.search(r"q\s*=\s*([0-9.]+)", params)
        try:
            return q is None or float(q.group(1)) > 0
        except ValueError:
            return True
    return False


def failed_before_execution(result: ExecutionResult) -> bool:
    """Parse, validation and pre-execution limit errors carry no path; field errors do."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )
