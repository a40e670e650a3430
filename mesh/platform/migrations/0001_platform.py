"""plugin states and settings

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plugin_state",
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("plugin", name=op.f("pk_plugin_state")),
        schema="mesh_platform",
    )
    op.create_table(
        "plugin_settings",
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("plugin", name=op.f("pk_plugin_settings")),
        schema="mesh_platform",
    )


def downgrade() -> None:
    op.drop_table("plugin_settings", schema="mesh_platform")
    op.drop_table("plugin_state", schema="mesh_platform")
