"""administrators' grants of plugins' hooks

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hook_grant",
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("plugin", name=op.f("pk_hook_grant")),
        schema="mesh_platform",
    )


def downgrade() -> None:
    op.drop_table("hook_grant", schema="mesh_platform")
