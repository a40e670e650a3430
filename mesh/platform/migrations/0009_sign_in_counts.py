"""sign-in counts: attempts and trusted addresses, shared by every server, kept over restarts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_attempt",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("pair_cleared", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempt")),
        schema="mesh_platform",
    )
    op.create_index("ix_sign_in_attempt_username", "sign_in_attempt", ["username", "at_ms"],
                    schema="mesh_platform")
    op.create_index("ix_sign_in_attempt_address", "sign_in_attempt", ["address", "at_ms"],
                    schema="mesh_platform")
    op.create_table(
        "sign_in_trusted",
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("address", "username", name=op.f("pk_sign_in_trusted")),
        schema="mesh_platform",
    )


def downgrade() -> None:
    op.drop_table("sign_in_trusted", schema="mesh_platform")
    op.drop_index("ix_sign_in_attempt_address", table_name="sign_in_attempt",
                  schema="mesh_platform")
    op.drop_index("ix_sign_in_attempt_username", table_name="sign_in_attempt",
                  schema="mesh_platform")
    op.drop_table("sign_in_attempt", schema="mesh_platform")
