"""applied actions: the ids of actions devices pushed, for applying each once

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "applied_action",
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("action_id", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=129), nullable=False),
        sa.Column("applied_ms", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user", "action_id", name=op.f("pk_applied_action")),
        schema="mesh_platform",
    )
    op.create_index("ix_applied_action_applied_ms", "applied_action", ["applied_ms"],
                    schema="mesh_platform")


def downgrade() -> None:
    op.drop_index("ix_applied_action_applied_ms", table_name="applied_action",
                  schema="mesh_platform")
    op.drop_table("applied_action", schema="mesh_platform")
