"""The trusted-document store: GraphQL documents by the SHA-256 of their text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import TrustedDocument


def document_hash(body: str) -> str:
    """The hex SHA-256 of the document's UTF-8 text, as Apollo's clients compute it."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredDocument:
    sha256: str
    body: str
    registered: bool


class DocumentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, sha256: str) -> StoredDocument | None:
        async with self._db.read_session(None) as session:
            row = await session.get(TrustedDocument, sha256)
            return None if row is None else StoredDocument(row.sha256, row.body, row.registered)

    async def learn(self, sha256: str, body: str) -> None:
        """Keeps a document a client sent with its hash (APQ); a known hash is left alone."""
        try:
            async with self._db.transaction(None) as session:
                if await session.get(TrustedDocument, sha256) is None:
                    session.add(TrustedDocument(sha256=sha256, body=body, registered=False))
        except IntegrityError:
            pass  # another request stored it meanwhile

    async def register(self, documents: Iterable[tuple[str, str | None]]) -> int:
        """Registers ``(body, name)`` documents for the allowlist; returns how many were new
        (a document already learned through APQ becomes registered)."""
        by_hash = {document_hash(body): (body, name) for body, name in documents}
        async with self._db.transaction(None) as session:
            found = {
                row.sha256: row
                for row in (
                    await session.execute(
                        select(TrustedDocument).where(TrustedDocument.sha256.in_(by_hash))
                    )
                ).scalars()
            }
            new = 0
            for sha256, (body, name) in by_hash.items():
                row = found.get(sha256)
                if row is None:
                    session.add(
                        TrustedDocument(sha256=sha256, body=body, name=name, registered=True)
                    )
                    new += 1
                else:
                    row.registered = True
                    row.name = name or row.name
        return new
