"""API client version sort key: list and paginate clients by SemVer precedence in SQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 04:01:33.849922
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from studio_integrations.core.semver import InvalidSemVer, SemVer

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sort_key(version: str) -> str:
    try:
        return SemVer.parse(version).sort_key
    except InvalidSemVer:
        return ""  # sorts last; only rows written before versions were validated


def upgrade() -> None:
    with op.batch_alter_table("external_api_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version_sort_key", sa.String(length=300), nullable=True))

    clients = sa.table(
        "external_api_clients",
        sa.column("id", sa.String),
        sa.column("version", sa.String),
        sa.column("version_sort_key", sa.String),
    )
    bind = op.get_bind()
    for id_, version in bind.execute(sa.select(clients.c.id, clients.c.version)).all():
        bind.execute(
            clients.update().where(clients.c.id == id_).values(version_sort_key=_sort_key(version))
        )

    with op.batch_alter_table("external_api_clients", schema=None) as batch_op:
        batch_op.alter_column(
            "version_sort_key", existing_type=sa.String(length=300), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("external_api_clients", schema=None) as batch_op:
        batch_op.drop_column("version_sort_key")
