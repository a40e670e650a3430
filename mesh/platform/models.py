"""Tables of the platform schema."""

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "mesh_platform"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention={"pk": "pk_%(table_name)s"})


class PluginStateRow(Base):
    """A plugin an administrator enabled or disabled; absent means enabled."""

    __tablename__ = "plugin_state"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool]
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(String(200))


class PluginSettingsRow(Base):
    """A plugin's global settings, as validated against its contract's settings model."""

    __tablename__ = "plugin_settings"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    values: Mapped[dict] = mapped_column(JSON)  # type: ignore[type-arg]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UploadedPluginRow(Base):
    """A plugin an administrator uploaded, at the version that runs: what every service
    restores at start-up when its environment lacks it (a recreated container, a new
    replica)."""

    __tablename__ = "uploaded_plugin"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    distribution: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(64))
    services: Mapped[list] = mapped_column(JSON)  # type: ignore[type-arg]
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PluginWheelRow(Base):
    """An uploaded wheel, kept where every server reaches it: a server whose own wheel store
    (its data directory) lacks a wheel takes it from here. `distribution` is the canonical
    name; a (distribution, version), once stored, never changes."""

    __tablename__ = "plugin_wheel"

    distribution: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HookGrantRow(Base):
    """An administrator's consent to a plugin's hooks, for its [[hooks]] as they were when
    granted (their digest): changed hooks need a new grant."""

    __tablename__ = "hook_grant"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str] = mapped_column(String(200))


class TaskLedgerRow(Base):
    """What the workers last reported of one task (mesh/platform/ledger.py); times are
    milliseconds since the epoch, as the workers send them. Kept MESH_TASK_LEDGER_RETENTION
    seconds after `updated_ms`."""

    __tablename__ = "task_ledger"
    __table_args__ = (Index("ix_task_ledger_updated_ms", "updated_ms"),)

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    task: Mapped[str] = mapped_column(String(129))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    enqueued_by: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200))
    enqueued_ms: Mapped[int | None] = mapped_column(BigInteger)
    started_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[str | None] = mapped_column(Text)
    result_bytes: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[dict | None] = mapped_column(JSON)  # type: ignore[type-arg]
