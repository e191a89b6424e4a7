"""Connection runs: headline status and latency, attempt details; provider auth scheme;
retired reason

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 06:00:59.045341
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from studio_integrations.persistence.types import JSONDocument

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integration_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retired_reason", sa.String(length=200), nullable=True))

    with op.batch_alter_table("integration_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("http_status", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("latency_ms", sa.Double(), nullable=True))

    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth_scheme", JSONDocument, nullable=True))

    with op.batch_alter_table("run_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_ref", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("response_excerpt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_attempts", schema=None) as batch_op:
        batch_op.drop_column("response_excerpt")
        batch_op.drop_column("address")
        batch_op.drop_column("external_ref")

    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_column("auth_scheme")

    with op.batch_alter_table("integration_runs", schema=None) as batch_op:
        batch_op.drop_column("latency_ms")
        batch_op.drop_column("http_status")

    with op.batch_alter_table("integration_connections", schema=None) as batch_op:
        batch_op.drop_column("retired_reason")
