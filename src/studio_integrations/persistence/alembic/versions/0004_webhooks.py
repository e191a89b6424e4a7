"""Webhooks: attempts keep their error category; one fan-out per event and subscription;
one accepted inbound delivery per connection and message id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 06:14:00.270283
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FANOUT_WHERE = "replay_of_id IS NULL AND event_id IS NOT NULL"
INBOUND_WHERE = "direction = 'INBOUND' AND status = 'SUCCEEDED'"
CATEGORIES = (
    "AUTHENTICATION",
    "AUTHORIZATION",
    "RATE_LIMITED",
    "TIMEOUT",
    "NETWORK",
    "SERVER_ERROR",
    "CLIENT_ERROR",
    "CONFIGURATION",
    "SIGNATURE",
    "UNKNOWN",
)


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "uq_webhook_deliveries_fanout",
            ["subscription_id", "event_id"],
            unique=True,
            sqlite_where=sa.text(FANOUT_WHERE),
            postgresql_where=sa.text(FANOUT_WHERE),
        )
        batch_op.create_index(
            "uq_webhook_deliveries_inbound_accepted",
            ["connection_id", "message_id"],
            unique=True,
            sqlite_where=sa.text(INBOUND_WHERE),
            postgresql_where=sa.text(INBOUND_WHERE),
        )

    with op.batch_alter_table("webhook_delivery_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "error_category",
                sa.Enum(*CATEGORIES, name="failurecategory", native_enum=False, length=32),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery_attempts", schema=None) as batch_op:
        batch_op.drop_column("error_category")

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_webhook_deliveries_inbound_accepted",
            sqlite_where=sa.text(INBOUND_WHERE),
            postgresql_where=sa.text(INBOUND_WHERE),
        )
        batch_op.drop_index(
            "uq_webhook_deliveries_fanout",
            sqlite_where=sa.text(FANOUT_WHERE),
            postgresql_where=sa.text(FANOUT_WHERE),
        )
