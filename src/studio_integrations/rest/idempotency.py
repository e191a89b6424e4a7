"""``Idempotency-Key`` (DESIGN §12) for mutations on ``/graphql`` and the REST alias.

A client that retries a mutation (its replica died, the network dropped the answer) sends
the same ``Idempotency-Key`` header. Keys are scoped to the caller's tenant and subject and
kept 24 h, in the database (so every replica sees them):

- the first request with a key runs, and its answer (status, body) is stored;
- the same key with the same request (method, path, JSON body compared canonically) returns
  the stored answer, with ``Idempotent-Replayed: true``, and acts no more;
- the same key with another request: ``422 IDEMPOTENCY_KEY_REUSED``, nothing done;
- while the first is still running: ``409 IDEMPOTENCY_KEY_IN_PROGRESS`` with ``Retry-After``
  (a first run that has not answered within ``IN_PROGRESS_STALE`` is taken over);
- an answer of 5xx (an outage, an unexpected error) is not kept: a retry acts again.

Queries (and requests without a key) pass straight through; so does an operation that cannot
be parsed here (Strawberry answers it). A key is 1 to 255 printable ASCII characters, else
``400 IDEMPOTENCY_KEY_INVALID``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from graphql import GraphQLError, OperationType, parse
from graphql.language import OperationDefinitionNode
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio_integrations.auth.gateway import PRINCIPAL_STATE
from studio_integrations.auth.request_limits import graphql_error_response
from studio_integrations.core.clock import utcnow
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import IdempotencyKey

HEADER = b"idempotency-key"
TTL = timedelta(hours=24)
IN_PROGRESS_STALE = timedelta(minutes=2)
MAX_KEY_LENGTH = 255
MAX_STORED_BYTES = 1024 * 1024


class IdempotencyGuard:
    def __init__(self, app: ASGIApp, db: Database, *, graphql: bool, max_body_bytes: int) -> None:
        self._app = app
        self._db = db
        self._graphql = graphql
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        raw_key = next((v for k, v in scope["headers"] if k == HEADER), None)
        principal = scope.get("state", {}).get(PRINCIPAL_STATE)
        if raw_key is None or principal is None:
            await self._app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not (0 < len(key) <= MAX_KEY_LENGTH) or not all(32 < ord(c) < 127 for c in key):
            refusal = graphql_error_response(
                400,
                "IDEMPOTENCY_KEY_INVALID",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            )
            await refusal(scope, receive, send)
            return
        body, complete = await _read_body(receive, self._max_body)
        replay = _replaying(body, receive)
        if not complete or (self._graphql and not _is_mutation(body)):
            await self._app(scope, replay, send)
            return
        fingerprint = _fingerprint(scope, body)
        scope_ = TenantScope.of(principal.tenant_id)
        state = await self._begin(scope_, principal.subject, key, fingerprint)
        if isinstance(state, IdempotencyKey):
            headers = {"Idempotent-Replayed": "true"}
            await _stored_response(state, headers)(scope, receive, send)
            return
        if state == "reused":
            refusal = graphql_error_response(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with another request; use a new key",
            )
            await refusal(scope, receive, send)
            return
        if state == "running":
            refusal = graphql_error_response(
                409,
                "IDEMPOTENCY_KEY_IN_PROGRESS",
                "a request with this Idempotency-Key is still running; retry shortly",
                headers={"Retry-After": "1"},
            )
            await refusal(scope, receive, send)
            return
        await self._run_and_keep(scope, replay, send, scope_, principal.subject, key)

    async def _begin(
        self, scope: TenantScope, subject: str, key: str, fingerprint: str
    ) -> IdempotencyKey | str:
        """``"new"`` (this request runs), ``"reused"``, ``"running"``, or the stored row."""
        for _ in range(2):
            now = utcnow()
            try:
                async with self._db.transaction(scope) as session:
                    row = await session.get(IdempotencyKey, (scope.tenant_id, subject, key))
                    if row is not None and row.expires_at > now:
                        if row.request_hash != fingerprint:
                            return "reused"
                        if row.status_code is not None:
                            return row
                        if now - row.created_at < IN_PROGRESS_STALE:
                            return "running"
                    if row is not None:  # expired, or a first run that never answered
                        await session.delete(row)
                        await session.flush()
                    # Expired keys of this tenant go as new ones come (no sweeper needed).
                    await session.execute(
                        delete(IdempotencyKey)
                        .where(
                            IdempotencyKey.tenant_id == scope.tenant_id,
                            IdempotencyKey.expires_at <= now,
                        )
                        .execution_options(synchronize_session=False)
                    )
                    session.add(
                        IdempotencyKey(
                            tenant_id=scope.tenant_id,
                            subject=subject,
                            key=key,
                            request_hash=fingerprint,
                            created_at=now,
                            expires_at=now + TTL,
                        )
                    )
                return "new"
            except IntegrityError:
                continue  # another replica inserted it first: read what it stored
        return "running"

    async def _run_and_keep(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        tenant: TenantScope,
        subject: str,
        key: str,
    ) -> None:
        status = 500
        content_type: str | None = None
        held: list[Message] = []

        async def capture(message: Message) -> None:
            # Held until the answer is stored: a retry that arrives once the client has the
            # answer must find it (not "in progress").
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            held.append(message)

        keep = False
        try:
            await self._app(scope, receive, capture)
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            keep = status < 500 and len(body) <= MAX_STORED_BYTES
        finally:
            async with self._db.transaction(tenant) as session:
                pk = (tenant.tenant_id, subject, key)
                if keep:
                    row = await session.get(IdempotencyKey, pk)
                    if row is not None:
                        row.status_code = status
                        row.content_type = content_type
                        row.response_body = body.decode("utf-8", errors="replace")
                else:
                    await session.execute(
                        delete(IdempotencyKey).where(
                            IdempotencyKey.tenant_id == tenant.tenant_id,
                            IdempotencyKey.subject == subject,
                            IdempotencyKey.key == key,
                        )
                    )
        for message in held:
            await send(message)


async def _read_body(receive: Receive, limit: int) -> tuple[list[Message], bool]:
    """The request's body messages, read up to ``limit`` bytes; False when over it."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        size += len(message.get("body", b""))
        if size > limit:
            return messages, False
        if not message.get("more_body", False):
            return messages, True


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _body_bytes(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")


def _is_mutation(messages: list[Message]) -> bool:
    try:
        doc = json.loads(_body_bytes(messages))
        query = doc.get("query") if isinstance(doc, dict) else None
        if not isinstance(query, str):
            return False
        operations = [d for d in parse(query).definitions if isinstance(d, OperationDefinitionNode)]
    except (ValueError, GraphQLError, RecursionError):
        return False
    name = doc.get("operationName")
    chosen = [o for o in operations if name is None or (o.name and o.name.value == name)]
    return len(chosen) == 1 and chosen[0].operation is OperationType.MUTATION


def _fingerprint(scope: Scope, messages: list[Message]) -> str:
    raw = _body_bytes(messages)
    try:
        canonical: Any = json.loads(raw)
        body = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        body = raw
    digest = hashlib.sha256()
    digest.update(f"{scope['method']} {scope['path']}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def _stored_response(row: IdempotencyKey, headers: dict[str, str]) -> Response:
    return Response(
        row.response_body or "",
        status_code=row.status_code or 200,
        media_type=row.content_type or "application/json",
        headers=headers,
    )
