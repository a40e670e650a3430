"""StringInt and setting tables

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
        "string_int",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("string1", sa.String(length=50), nullable=False),
        sa.Column("int1", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_string_int")),
        schema="pl_tutorial",
    )
    op.create_table(
        "setting",
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_setting")),
        schema="pl_tutorial",
    )


def downgrade() -> None:
    op.drop_table("setting", schema="pl_tutorial")
    op.drop_table("string_int", schema="pl_tutorial")
