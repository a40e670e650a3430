"""The tutorial's tables, in its own schema `pl_tutorial`."""

from sqlalchemy import MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(schema="pl_tutorial", naming_convention=NAMING)


class StringIntRow(Base):
    __tablename__ = "string_int"

    id: Mapped[int] = mapped_column(primary_key=True)
    string1: Mapped[str] = mapped_column(String(50))
    int1: Mapped[int]


class SettingRow(Base):
    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AppliedTaskRow(Base):
    """The idempotency keys of the tasks whose effect is in the database (docs/tasks.md)."""

    __tablename__ = "applied_task"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
