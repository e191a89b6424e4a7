"""Rotation repository: a credential's rotations, the live (leased) one, and the rows the
rotation scheduler claims. The SQL of ``domain.rotation`` lives here.

Exclusivity: a rotation starts only inside a transaction that holds the credential's row lock
(``lock_credential``: ``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises every write
transaction with ``BEGIN IMMEDIATE``), so two replicas can never both see "no live rotation"
and both insert one. Worker queries claim rows with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select

from studio_integrations.core.enums import RotationStatus
from studio_integrations.persistence.models import (
    AuditEvent,
    Credential,
    CredentialRotation,
    IntegrationRun,
)
from studio_integrations.persistence.repository import TenantRepository

LIVE_STATUSES = (RotationStatus.PENDING, RotationStatus.VERIFYING)


class RotationRepository(TenantRepository[CredentialRotation]):
    model = CredentialRotation

    async def lock_credential(self, credential_id: str) -> Credential | None:
        """The credential, row-locked until the transaction ends (the rotation mutex)."""
        stmt = select(Credential).where(Credential.id == credential_id).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def live_for(self, credential_id: str, *, lock: bool = False) -> list[CredentialRotation]:
        """PENDING or VERIFYING rotations of one credential, whatever their lease (``lock``:
        row-locked, so the scheduler's sweep cannot resolve them at the same time)."""
        stmt = self.select().where(
            CredentialRotation.credential_id == credential_id,
            CredentialRotation.status.in_(LIVE_STATUSES),
        )
        if lock:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt)).scalars())

    async def get_locked(self, rotation_id: str) -> CredentialRotation | None:
        """A rotation, row-locked: its status is settled by one writer at a time."""
        stmt = self.select().where(CredentialRotation.id == rotation_id).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def for_credentials(
        self, credential_ids: Sequence[str], limit: int
    ) -> dict[str, list[CredentialRotation]]:
        """The newest ``limit`` rotations of each credential (DataLoader batch shape)."""
        found: dict[str, list[CredentialRotation]] = defaultdict(list)
        if credential_ids:
            stmt = (
                self.select()
                .where(CredentialRotation.credential_id.in_(set(credential_ids)))
                .order_by(CredentialRotation.id.desc())
            )
            for row in (await self.session.execute(stmt)).scalars():
                if len(found[row.credential_id]) < limit:
                    found[row.credential_id].append(row)
        return found

    async def runs_for(self, rotation_ids: Sequence[str]) -> dict[str, list[IntegrationRun]]:
        """Verification runs per rotation, oldest first."""
        found: dict[str, list[IntegrationRun]] = defaultdict(list)
        if rotation_ids:
            stmt = (
                select(IntegrationRun)
                .where(IntegrationRun.rotation_id.in_(set(rotation_ids)))
                .order_by(IntegrationRun.id)
            )
            for row in (await self.session.execute(stmt)).scalars():
                assert row.rotation_id is not None
                found[row.rotation_id].append(row)
        return found

    async def latest_for(self, credential_id: str) -> CredentialRotation | None:
        stmt = (
            self.select()
            .where(CredentialRotation.credential_id == credential_id)
            .order_by(CredentialRotation.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # --- worker claims (system scope) ---------------------------------------------------

    async def claim_abandoned(self, now: datetime, limit: int) -> list[CredentialRotation]:
        """Live rotations whose lease ran out (their process died), locked for resolution."""
        stmt = (
            self.select()
            .where(
                CredentialRotation.status.in_(LIVE_STATUSES),
                or_(
                    CredentialRotation.lease_until.is_(None),
                    CredentialRotation.lease_until <= now,
                ),
            )
            .order_by(CredentialRotation.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def claim_unwarned(self, expiring_before: datetime, limit: int) -> list[Credential]:
        """Credentials expiring before the bound whose current version was not warned yet."""
        stmt = (
            select(Credential)
            .where(
                Credential.expires_at.is_not(None),
                Credential.expires_at <= expiring_before,
                Credential.expiry_warning_days.is_not(None),
                or_(
                    Credential.expiry_warned_version.is_(None),
                    Credential.expiry_warned_version != Credential.current_version,
                ),
            )
            .order_by(Credential.expires_at, Credential.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def with_cadence(self) -> list[Credential]:
        stmt = (
            select(Credential).where(Credential.cadence_days.is_not(None)).order_by(Credential.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def lock_credential_skip_locked(self, credential_id: str) -> Credential | None:
        stmt = (
            select(Credential)
            .where(Credential.id == credential_id)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def events_about(self, subject_id: str, event_type: str) -> list[AuditEvent]:
        stmt = select(AuditEvent).where(
            AuditEvent.subject_id == subject_id, AuditEvent.type == event_type
        )
        return list((await self.session.execute(stmt)).scalars())

    async def alert_candidates(self, expiring_before: datetime) -> list[Credential]:
        """The tenant's credentials that may be expiring or due (the caller filters by each
        one's own warning window)."""
        stmt = select(Credential).where(
            Credential.expiry_warning_days.is_not(None),
            or_(
                Credential.cadence_days.is_not(None),
                Credential.expires_at <= expiring_before,
            ),
        )
        return list((await self.session.execute(stmt)).scalars())
