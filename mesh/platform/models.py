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


class PluginLogLevelRow(Base):
    """A plugin's log level as an administrator set it through the admin API: every service
    applies it at start, over MESH_PLUGIN_LOG_LEVELS; absent means the configured level."""

    __tablename__ = "plugin_log_level"

    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[str] = mapped_column(String(8))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(String(200))


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


class AppliedActionRow(Base):
    """An action a device pushed with an id of its own, applied (mesh/platform/applied.py):
    written in the same transaction as the action's effect, its result added once known.
    Kept MESH_ACTION_ID_RETENTION seconds (plus MESH_ACTION_CLOCK_SKEW) after `applied_ms`."""

    __tablename__ = "applied_action"
    __table_args__ = (Index("ix_applied_action_applied_ms", "applied_ms"),)

    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    action_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    action: Mapped[str] = mapped_column(String(129))
    applied_ms: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[str | None] = mapped_column(Text)


class NotificationRow(Base):
    """One notification as sent (docs/plugin-guide.md, Notifications): its template, its
    payload, the template's permission when it was sent, and when. Who it is for is in
    `notification_recipient`; kept MESH_NOTIFICATION_RETENTION seconds."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_sent_ms", "sent_ms"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    template: Mapped[str] = mapped_column(String(129))
    group: Mapped[str] = mapped_column(String(129))
    payload: Mapped[dict] = mapped_column(JSON)  # type: ignore[type-arg]
    permission: Mapped[str | None] = mapped_column(String(200))
    sent_by: Mapped[str] = mapped_column(String(200))
    sent_ms: Mapped[int] = mapped_column(BigInteger)


class NotificationRecipientRow(Base):
    """Who a notification is for: `user` or `role` (value: its name), `everyone` (the
    followers of a group followed by default), or `except` (a user who had unfollowed it)."""

    __tablename__ = "notification_recipient"
    __table_args__ = (Index("ix_notification_recipient_value", "kind", "value"),)

    notification_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)


class NotificationReadRow(Base):
    """A user has read a notification."""

    __tablename__ = "notification_read"

    notification_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    read_ms: Mapped[int] = mapped_column(BigInteger)


class NotificationFollowRow(Base):
    """A user's choice for a group (`<plugin>.<group>`); absent: the template's default."""

    __tablename__ = "notification_follow"

    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    group: Mapped[str] = mapped_column(String(129), primary_key=True)
    following: Mapped[bool]


class PersonalSettingsRow(Base):
    """One user's personal settings of one plugin, as validated against its contract's
    personal settings model; absent fields take the model's defaults."""

    __tablename__ = "personal_settings"

    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    values: Mapped[dict] = mapped_column(JSON)  # type: ignore[type-arg]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInAttemptRow(Base):
    """A sign-in attempt not known to have succeeded: in flight, or a wrong password
    (mesh/platform/sign_in_counts.py). Every server counts the same rows, and they outlive a
    restart; kept for the sign-in window. `pair_cleared`: the user signed in since from this
    address, so it no longer counts against the (address, username) allowance."""

    __tablename__ = "sign_in_attempt"
    __table_args__ = (Index("ix_sign_in_attempt_username", "username", "at_ms"),
                      Index("ix_sign_in_attempt_address", "address", "at_ms"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(100))
    username: Mapped[str] = mapped_column(String(200))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    pair_cleared: Mapped[bool]


class SignInTrustedRow(Base):
    """An address a user signed in from, and when last: spared the ceilings."""

    __tablename__ = "sign_in_trusted"

    address: Mapped[str] = mapped_column(String(100), primary_key=True)
    username: Mapped[str] = mapped_column(String(200), primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
