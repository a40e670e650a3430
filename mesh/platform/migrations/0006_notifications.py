"""notifications, who they are for, who read them, followed groups; personal settings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "mesh_platform"


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("template", sa.String(length=129), nullable=False),
        sa.Column("group", sa.String(length=129), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("permission", sa.String(length=200), nullable=True),
        sa.Column("sent_by", sa.String(length=200), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        schema=SCHEMA,
    )
    op.create_index("ix_notification_sent_ms", "notification", ["sent_ms"], schema=SCHEMA)
    op.create_table(
        "notification_recipient",
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "kind", "value",
                                name=op.f("pk_notification_recipient")),
        schema=SCHEMA,
    )
    op.create_index("ix_notification_recipient_value", "notification_recipient",
                    ["kind", "value"], schema=SCHEMA)
    op.create_table(
        "notification_read",
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("read_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "user", name=op.f("pk_notification_read")),
        schema=SCHEMA,
    )
    op.create_table(
        "notification_follow",
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("group", sa.String(length=129), nullable=False),
        sa.Column("following", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user", "group", name=op.f("pk_notification_follow")),
        schema=SCHEMA,
    )
    op.create_table(
        "personal_settings",
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user", "plugin", name=op.f("pk_personal_settings")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("personal_settings", schema=SCHEMA)
    op.drop_table("notification_follow", schema=SCHEMA)
    op.drop_table("notification_read", schema=SCHEMA)
    op.drop_index("ix_notification_recipient_value", table_name="notification_recipient",
                  schema=SCHEMA)
    op.drop_table("notification_recipient", schema=SCHEMA)
    op.drop_index("ix_notification_sent_ms", table_name="notification", schema=SCHEMA)
    op.drop_table("notification", schema=SCHEMA)
