"""Tables of the platform schema."""

from datetime import datetime

from sqlalchemy import JSON, DateTime, MetaData, String
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


class HookGrantRow(Base):
    """An administrator's consent to a plugin's hooks, for its [[hooks]] as they were when
    granted (their digest): changed hooks need a new grant."""

    __tablename__ = "hook_grant"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str] = mapped_column(String(200))
