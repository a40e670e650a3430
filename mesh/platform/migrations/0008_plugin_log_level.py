"""plugins' log levels set through the admin API, kept across restarts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plugin_log_level",
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("plugin", name=op.f("pk_plugin_log_level")),
        schema="mesh_platform",
    )


def downgrade() -> None:
    op.drop_table("plugin_log_level", schema="mesh_platform")
