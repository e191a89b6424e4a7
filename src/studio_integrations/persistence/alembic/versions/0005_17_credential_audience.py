"""Credential audience: the providers and hosts a credential's secret may be sent to.

Existing credentials keep working where they are used: each one's audience becomes the
providers of the connections bound to it (retired ones included, so history stays
explainable). A credential bound nowhere gets an empty audience: its first binding needs a
caller holding ``credentials:write``, which widens it (audited).

Revision ID: i17_credential_audience
Revises: 0004
Create Date: 2026-11-30 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from studio_integrations.persistence.types import JSONDocument

revision: str = "i17_credential_audience"
down_revision: str | None = "i14_event_sequence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audience", JSONDocument, nullable=True))

    bind = op.get_bind()
    credentials = sa.table(
        "credentials", sa.column("id", sa.String), sa.column("audience", JSONDocument)
    )
    connections = sa.table(
        "integration_connections",
        sa.column("credential_id", sa.String),
        sa.column("provider_id", sa.String),
    )
    bound: dict[str, set[str]] = {}
    for credential_id, provider_id in bind.execute(
        sa.select(connections.c.credential_id, connections.c.provider_id).where(
            connections.c.credential_id.is_not(None)
        )
    ):
        bound.setdefault(credential_id, set()).add(provider_id)
    for (credential_id,) in bind.execute(sa.select(credentials.c.id)):
        bind.execute(
            credentials.update()
            .where(credentials.c.id == credential_id)
            .values(audience=sorted(bound.get(credential_id, set())))
        )

    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.alter_column("audience", existing_type=JSONDocument, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("audience")
