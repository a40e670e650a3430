"""users, roles and tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "pl_identity"


def upgrade() -> None:
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("bootstrap", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("username", name=op.f("uq_user_username")),
        schema=SCHEMA,
    )
    op.create_table(
        "role",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_role")),
        schema=SCHEMA,
    )
    op.create_table(
        "user_role",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["role"], [f"{SCHEMA}.role.name"],
                                name=op.f("fk_user_role_role_role")),
        sa.ForeignKeyConstraint(["user_id"], [f"{SCHEMA}.user.id"],
                                name=op.f("fk_user_role_user_id_user")),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_user_role")),
        schema=SCHEMA,
    )
    op.create_table(
        "token",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], [f"{SCHEMA}.user.id"],
                                name=op.f("fk_token_user_id_user")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_token")),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_token_user_id"), "token", ["user_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index(op.f("ix_token_user_id"), table_name="token", schema=SCHEMA)
    op.drop_table("token", schema=SCHEMA)
    op.drop_table("user_role", schema=SCHEMA)
    op.drop_table("role", schema=SCHEMA)
    op.drop_table("user", schema=SCHEMA)
