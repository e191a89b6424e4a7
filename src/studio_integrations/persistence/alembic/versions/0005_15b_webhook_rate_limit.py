"""An optional per-subscription delivery rate (``maxDeliveriesPerSecond``, issue 15)

Revision ID: i15b_webhook_rate_limit
Revises: i16_trusted_documents
Create Date: 2026-12-01 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i15b_webhook_rate_limit"
down_revision: str | None = "i16_trusted_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_deliveries_per_second", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("max_deliveries_per_second")
