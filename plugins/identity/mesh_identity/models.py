"""The identity plugin's tables, in its own schema `pl_identity`. Times are Unix seconds."""

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.storage.naming import NAMING_CONVENTION


class Base(DeclarativeBase):
    metadata = MetaData(schema="pl_identity", naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    bootstrap: Mapped[bool] = mapped_column(Boolean, default=False)  # password generated
    created_at: Mapped[float] = mapped_column(Float)
    # wrong passwords in a row, and until when sign-in is refused once there were too many
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[float | None] = mapped_column(Float)


class RoleRow(Base):
    __tablename__ = "role"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    permissions: Mapped[str] = mapped_column(Text, default="[]")  # a JSON list


class UserRoleRow(Base):
    __tablename__ = "user_role"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    role: Mapped[str] = mapped_column(ForeignKey("role.name"), primary_key=True)


class TokenRow(Base):
    """A session: only the token's SHA-256 is kept, never the token."""

    __tablename__ = "token"
    __table_args__ = (Index("ix_token_user_id", "user_id"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
