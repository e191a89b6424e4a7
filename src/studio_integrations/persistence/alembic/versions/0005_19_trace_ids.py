"""Trace ids on runs, failures and webhook deliveries (trace links, DESIGN §12)

Revision ID: i19_trace_ids
Revises: 0004
Create Date: 2026-11-30 20:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i19_trace_ids"
down_revision: str | None = "i17_credential_audience"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("integration_runs", "integration_failures", "webhook_deliveries")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("trace_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("trace_id")
