"""Standard Webhooks 1.0 signatures (https://www.standardwebhooks.com/).

A secret is ``whsec_`` + base64 of at least 24 random bytes; the HMAC key is the decoded
bytes. The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"`` and the header
``webhook-signature`` carries space-separated ``v1,<base64 HMAC-SHA256>`` entries (several
while a secret rotation overlaps). Verification accepts any ``v1`` entry that matches and
refuses timestamps more than ``tolerance`` seconds from now, in either direction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from enum import StrEnum

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
MAX_MESSAGE_ID_CHARS = 200


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64-decoded part after ``whsec_`` (as the reference
    implementation does); a value that is not base64 is used as UTF-8 bytes."""
    raw = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_)


def webhook_headers(
    secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, message_id, timestamp, body),
    }


_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Verdict(StrEnum):
    VALID = "VALID"
    INVALID = "INVALID"  # a signature is present and none matches (or a header is malformed)
    MISSING = "MISSING"  # no signature headers at all
    STALE = "STALE"  # the signature matches but the timestamp is out of tolerance


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: int = TIMESTAMP_TOLERANCE_SECONDS,
) -> Verdict:
    """Check Standard Webhooks headers (names lower-case) against ``secret``."""
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not message_id and not timestamp and not signature:
        return Verdict.MISSING
    if not message_id or not timestamp or not signature:
        return Verdict.MISSING if not signature else Verdict.INVALID
    # ASCII digits only, at most 12 (``isdigit`` takes other scripts' digits, and a number
    # of thousands of digits is past what ``int`` converts).
    if len(message_id) > MAX_MESSAGE_ID_CHARS or not _TIMESTAMP.fullmatch(timestamp):
        return Verdict.INVALID
    expected = sign(secret, message_id, int(timestamp), body).split(",", 1)[1]
    matched = False
    for entry in signature.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            matched = True
            break
    if not matched:
        return Verdict.INVALID
    if abs(now - int(timestamp)) > tolerance:
        return Verdict.STALE
    return Verdict.VALID
