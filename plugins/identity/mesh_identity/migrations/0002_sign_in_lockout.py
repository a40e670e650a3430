"""sign-in lockout: wrong passwords in a row, and until when a user is locked

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "pl_identity"


def upgrade() -> None:
    with op.batch_alter_table("user", schema=SCHEMA) as batch:
        batch.add_column(sa.Column("failed_sign_ins", sa.Integer(), server_default="0",
                                   nullable=False))
        batch.add_column(sa.Column("locked_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user", schema=SCHEMA) as batch:
        batch.drop_column("locked_until")
        batch.drop_column("failed_sign_ins")
