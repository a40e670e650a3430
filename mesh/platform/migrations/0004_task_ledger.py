"""the task ledger: each task's last reported state and result

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_ledger",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("task", sa.String(length=129), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("enqueued_by", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("enqueued_ms", sa.BigInteger(), nullable=True),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("result_bytes", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_ledger")),
        schema="mesh_platform",
    )
    op.create_index("ix_task_ledger_updated_ms", "task_ledger", ["updated_ms"],
                    schema="mesh_platform")


def downgrade() -> None:
    op.drop_index("ix_task_ledger_updated_ms", table_name="task_ledger", schema="mesh_platform")
    op.drop_table("task_ledger", schema="mesh_platform")
