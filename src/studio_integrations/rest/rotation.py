"""REST alias of ``rotateCredential``: ``POST /integrations/credentials/rotate``.

It is the mutation, not a copy of it. The route sits behind the same ``GraphQLGateway`` as
``/graphql`` (bearer token verified by the same verifier), and the endpoint executes the
``rotateCredential`` operation below on the same schema, with the same context (tenant,
actor, trace id from ``traceparent``): the scope guard (``credentials:rotate``), the domain
function, the audit events and the answer are the mutation's own.

Request: ``Content-Type: application/json``, body ``{"credentialId": "cred_…"}``, optionally
with ``"expiresAt": "<ISO 8601>"`` (the new version's expiry, as in the mutation; no other
keys). Answers (JSON):

- ``200`` the mutation's payload: ``{"rotation": {…}, "credential": {…}, "userErrors": []}``;
  the rotation is PROMOTED or FAILED (a failed verification is a result, as in GraphQL).
  ``rotation.verificationRuns`` is there when the token also has ``connections:read`` (the
  field's own guard).
- ``401`` no or an invalid token (the gateway's GraphQL-shaped body, ``UNAUTHENTICATED``).
- ``403`` the token lacks ``credentials:rotate``: ``{"errors": [{message, extensions: {code:
  "FORBIDDEN"}}]}``; nothing is written.
- ``400`` a body that is not a JSON object with a string ``credentialId`` (``BAD_REQUEST``).
- a refused rotation: the payload with ``rotation: null`` and its ``userErrors``, with
  ``404`` for ``CREDENTIAL_NOT_FOUND`` (also another tenant's id), ``409`` for
  ``ROTATION_IN_PROGRESS``, ``422`` for the others (e.g. ``NO_NEWER_VERSION``).
- other GraphQL errors keep their ``extensions.code`` (``429`` when rate limited, ``500``
  for an unexpected error, masked with its ``traceId``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from studio_integrations.auth.gateway import PRINCIPAL_STATE, GraphQLGateway
from studio_integrations.auth.scopes import Scope as ScopeName
from studio_integrations.core.trace import current_trace_id
from studio_integrations.rest.idempotency import IdempotencyGuard
from studio_integrations.schema.context import StudioContext
from studio_integrations.schema.schema import schema
from studio_integrations.services import Services

ROTATE_PATH = "/integrations/credentials/rotate"
MAX_BODY_BYTES = 16 * 1024
MAX_ID_LENGTH = 200

RUN_FIELDS = """
  id connectionId kind status credentialVersion httpStatus latencyMs errorCategory errorMessage
  externalRef startedAt finishedAt
"""

ROTATE_OPERATION = f"""
mutation RotateCredential($input: RotateCredentialInput!, $runs: Boolean!) {{
  rotateCredential(input: $input) {{
    rotation {{
      id credentialId status previousVersion newVersion failureReason requestedBy
      startedAt finishedAt
      verificationRuns @include(if: $runs) {{ {RUN_FIELDS} }}
    }}
    credential {{
      id name keyVaultRef authMode currentVersion lastRotatedAt expiresAt rotationStrategy
    }}
    userErrors {{ field code message }}
  }}
}}
"""

USER_ERROR_STATUS = {"CREDENTIAL_NOT_FOUND": 404, "ROTATION_IN_PROGRESS": 409}
ERROR_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    "INTERNAL_SERVER_ERROR": 500,
}


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]},
        status_code=400,
    )


async def _credential_id(request: Request) -> str | JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _bad_request("send the body as application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _bad_request(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        return _bad_request("the body is not valid JSON")
    if not isinstance(doc, dict) or "credentialId" not in doc or not set(doc) <= BODY_KEYS:
        return _bad_request(
            'the body must be a JSON object {"credentialId": "<id>"} (and optional "expiresAt")'
        )
    credential_id = doc["credentialId"]
    if not isinstance(credential_id, str) or not credential_id.strip():
        return _bad_request("credentialId must be a non-empty string")
    if len(credential_id) > MAX_ID_LENGTH:
        return _bad_request(f"credentialId must be at most {MAX_ID_LENGTH} characters")
    expires_at = doc.get("expiresAt")
    if expires_at is not None and (not isinstance(expires_at, str) or len(expires_at) > 64):
        return _bad_request("expiresAt must be an ISO 8601 date-time string")
    request.state.rotation_expires_at = expires_at
    return credential_id.strip()


BODY_KEYS = frozenset({"credentialId", "expiresAt"})


class RotateEndpoint:
    """The ASGI endpoint; ``route_app`` puts it behind the gateway."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> JSONResponse:
        principal = getattr(request.state, PRINCIPAL_STATE, None)
        assert principal is not None  # the gateway answered 401 otherwise
        credential_id = await _credential_id(request)
        if isinstance(credential_id, JSONResponse):
            return credential_id
        context = StudioContext(
            request=request,
            response=None,
            services=self.services,
            trace_id=current_trace_id(),
            principal=principal,
        )
        result = await schema.execute(
            ROTATE_OPERATION,
            # Verification runs are connection data: answered to callers who may read them.
            variable_values={
                "input": {
                    "credentialId": credential_id,
                    "expiresAt": getattr(request.state, "rotation_expires_at", None),
                },
                "runs": principal.has(ScopeName.CONNECTIONS_READ),
            },
            context_value=context,
            operation_name="RotateCredential",
        )
        if result.errors:
            errors = [e.formatted for e in result.errors]
            code = (errors[0].get("extensions") or {}).get("code", "BAD_REQUEST")
            return JSONResponse({"errors": errors}, status_code=ERROR_STATUS.get(code, 400))
        assert result.data is not None
        payload: dict[str, Any] = result.data["rotateCredential"]
        user_errors = payload.get("userErrors") or []
        status = USER_ERROR_STATUS.get(user_errors[0]["code"], 422) if user_errors else 200
        return JSONResponse(payload, status_code=status)


def route_app(services: Services) -> GraphQLGateway:
    """The endpoint behind ``/graphql``'s gateway: same token verification, same 401."""
    endpoint = IdempotencyGuard(
        RotateEndpoint(services),
        services.db,
        graphql=False,
        max_body_bytes=services.settings.max_body_bytes,
    )
    return GraphQLGateway(endpoint, services.verifier)
