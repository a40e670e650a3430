"""Platform settings: MESH_* environment variables, then an optional mesh.toml, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SERVICE_KINDS: tuple[str, ...] = ("server", "client", "agent", "worker")


def _config_file() -> Path:
    return Path(os.environ.get("MESH_CONFIG", "mesh.toml"))


class MeshSettings(BaseSettings):
    """Everything a service needs to join the mesh; see docs/operations.md for the reference."""

    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore")

    broker_url: str | None = Field(
        default=None,
        description="amqp:// URL of RabbitMQ. Unset: the embedded in-process bus.",
    )
    exchange: str = Field(
        default="mesh",
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Name of the topic exchange; every queue name is prefixed with it.",
    )
    data_dir: Path = Field(default=Path(".mesh"), description="Where mesh keeps local state.")
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg:// URL. Unset: SQLite files in the data directory.",
    )
    disabled_plugins: list[str] = Field(
        default_factory=list, description="Plugins discovered but not loaded."
    )
    heartbeat_interval: float = Field(default=5.0, gt=0)
    rpc_concurrency: int = Field(
        default=64, gt=0, description="RPC calls one plugin's queue runs at once per instance."
    )
    task_concurrency: int = Field(
        default=16, gt=0, description="Async tasks one worker process runs at once.",
    )
    task_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, gt=0,
        description="Processes of a worker's pool for CPU-bound tasks (one task each).",
    )
    shutdown_timeout: float = Field(
        default=10.0, ge=0, description="How long in-flight handlers may run after SIGTERM."
    )
    connect_timeout: float = Field(default=10.0, gt=0)
    client_host: str = Field(default="127.0.0.1", description="Where the device gateway listens.")
    client_port: int = Field(default=8000, ge=0, le=65535,
                             description="The device gateway's port; 0 picks a free one.")
    observable_linger: float = Field(
        default=30.0, ge=0,
        description="Seconds a client keeps a selector upstream after its last device left.",
    )
    admin_host: str = Field(default="127.0.0.1", description="Where the admin API listens.")
    admin_port: int = Field(default=8010, ge=0, le=65535, description="0 picks a free one.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin API; unset: generated once into the data dir.",
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="The first administrator's password; unset: generated once into the data "
        "dir. The identity provider creates the user `admin` with it when it has no users.",
    )
    identity_provider: str = Field(
        default="identity", pattern=r"^[a-z][a-z0-9_]*$",
        description="The plugin whose published IdentityApi says who people and devices are.",
    )
    identity_cache_seconds: float = Field(
        default=10.0, gt=0, le=3600,
        description="How long a client service trusts a token check without asking again: "
        "the longest a missed revocation or permission change can take to apply.",
    )
    admin_url: str | None = Field(
        default=None, description="Where `mesh call` finds the admin API when no broker is set.")
    upload_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    device_max_frame_bytes: int = Field(default=64 * 1024, gt=0)
    device_max_subscriptions: int = Field(default=200, gt=0)
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: str = "INFO"
    instance_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]+$",
        description="Names this instance on the bus; defaults to service-host-pid-random.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)
