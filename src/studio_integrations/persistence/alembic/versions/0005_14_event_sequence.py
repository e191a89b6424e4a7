"""Event cursors in commit order, and outbox leases (issue #14)

``audit_events.sequence`` is assigned by the outbox relay when it claims the event for
publishing, under a lock held until that claim commits, so sequence order is commit order:
a resumable subscription replays ``sequence > cursor`` without gaps. ``outbox_messages.
lease_until`` lets the relay publish outside any transaction while other replicas skip the
rows it claimed.

Revision ID: i14_event_sequence
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from studio_integrations.persistence.types import UTCDateTime

revision: str = "i14_event_sequence"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_audit_events_sequence", ["sequence"], unique=True)
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_sequence")
        batch_op.drop_column("sequence")
