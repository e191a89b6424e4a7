"""Replay for resumable subscriptions: a tenant's events committed after a cursor.

A cursor names an event by its commit-order ``sequence`` (``audit_events.sequence``, handed
out by the outbox relay in commit order), not by its id: ids are made before commit, so an
id-ordered replay could miss an event that committed after a later id. Cursors are opaque to
clients (``evc_<sequence>``). Audit events are kept forever, but a resumed stream replays at
most ``RESUME_WINDOW`` back: an older cursor is refused (``CURSOR_EXPIRED``) and the client
reloads its view with a query instead. A cursor of another tenant behaves like one that does
not exist (``CURSOR_NOT_FOUND``), as every id does (DESIGN §3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import select

from studio_integrations.core.clock import utcnow
from studio_integrations.core.context import Actor
from studio_integrations.core.errors import StudioError
from studio_integrations.events.envelope import EventEnvelope, EventSubject
from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import AuditEvent

PREFIX = "evc_"
RESUME_WINDOW = timedelta(hours=24)
PAGE = 200


class CursorError(StudioError):
    code = "CURSOR_INVALID"


def event_cursor(sequence: int | None) -> str | None:
    return None if sequence is None else f"{PREFIX}{sequence}"


def parse_cursor(cursor: str) -> int:
    digits = cursor.removeprefix(PREFIX)
    if not cursor.startswith(PREFIX) or not digits.isdigit() or len(digits) > 18:
        raise CursorError(f"{cursor!r} is not an event cursor (use the `cursor` of a pushed event)")
    return int(digits)


def envelope_of(row: AuditEvent) -> EventEnvelope:
    return EventEnvelope(
        id=row.id,
        type=row.type,
        tenant_id=row.tenant_id,
        occurred_at=row.occurred_at,
        actor=Actor(subject=row.actor_subject, kind=row.actor_kind, name=row.actor_name),
        trace_id=row.trace_id,
        subject=EventSubject(type=row.subject_type, id=row.subject_id),
        data=row.data,
        sequence=row.sequence,
    )


async def check_cursor(db: Database, tenant_id: str, cursor: str) -> int:
    """The sequence a stream resumes after; raises ``CursorError`` with a code when the
    cursor is malformed, unknown (or another tenant's) or older than the resume window."""
    sequence = parse_cursor(cursor)
    async with db.read_session(TenantScope.of(tenant_id)) as session:
        row = (
            await session.execute(select(AuditEvent).where(AuditEvent.sequence == sequence))
        ).scalar_one_or_none()
    if row is None:
        raise CursorError(f"no event has the cursor {cursor!r}", code="CURSOR_NOT_FOUND")
    if row.occurred_at < utcnow() - RESUME_WINDOW:
        raise CursorError(
            f"the cursor {cursor!r} is older than the {RESUME_WINDOW} a stream can resume "
            "from; reload with a query and subscribe without `after`",
            code="CURSOR_EXPIRED",
        )
    return sequence


async def events_after(db: Database, tenant_id: str, sequence: int) -> AsyncIterator[EventEnvelope]:
    """The tenant's published events after ``sequence``, in commit order, page by page."""
    while True:
        async with db.read_session(TenantScope.of(tenant_id)) as session:
            rows = list(
                (
                    await session.execute(
                        select(AuditEvent)
                        .where(AuditEvent.sequence > sequence)
                        .order_by(AuditEvent.sequence)
                        .limit(PAGE)
                    )
                ).scalars()
            )
        for row in rows:
            yield envelope_of(row)
        if len(rows) < PAGE:
            return
        sequence = rows[-1].sequence or sequence
