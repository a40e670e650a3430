"""Platform settings: MESH_* environment variables, then an optional mesh.toml, then defaults."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mesh.broker_urls import split_broker_urls
from mesh.cpus import usable_cpus
from mesh.tls import check_key_pair


def _config_file() -> Path:
    return Path(os.environ.get("MESH_CONFIG", "mesh.toml"))


class MeshSettings(BaseSettings):
    """Everything a service needs to join the mesh; see docs/operations.md for the reference."""

    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore")

    broker_url: str | None = Field(
        default=None,
        description="amqp:// URL of RabbitMQ, or the comma-separated URLs of a cluster's nodes "
        "(one vhost; a service fails over between them). Unset: the embedded in-process bus.",
    )
    broker_cluster: bool | None = Field(
        default=None,
        description="Whether the broker is a RabbitMQ cluster: then RPC queues and task results "
        "queues are quorum queues, which survive losing a node. Unset: a cluster when "
        "MESH_BROKER_URL lists several nodes; set it when one address (a load balancer) fronts "
        "a cluster. Every service of a mesh must agree.",
    )
    broker_users: Literal["kinds", "shared"] = Field(
        default="kinds",
        description="`mesh up` on a broker: `kinds` makes one broker user per service kind "
        "(`<prefix>-server`, ...), with the permissions of `mesh broker acl`, and starts each "
        "service as its own; `shared` runs them all as MESH_BROKER_URL's user.",
    )
    broker_user_prefix: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_\-]+$",
        description="`mesh up`'s broker users are named `<prefix>-<kind>`. Unset: the "
        "exchange's name.",
    )
    broker_management_url: str | None = Field(
        default=None,
        description="http(s):// URL of RabbitMQ's management API, through which `mesh up` "
        "and `mesh broker acl --apply` make the broker users. Unset: `rabbitmqctl` on this "
        "host, else the API on port 15672 of MESH_BROKER_URL's host.",
    )
    exchange: str = Field(
        default="mesh",
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Name of the topic exchange; every queue name is prefixed with it.",
    )
    data_dir: Path = Field(
        default=Path(".mesh"),
        description="Local state: the admin token, the wheel store, health files, SQLite files.")
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg:// URL. Unset: SQLite files in the data directory.",
    )
    disabled_plugins: list[str] = Field(
        default_factory=list, description="JSON list of plugins discovered but not loaded."
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0,
        description="Seconds between heartbeats; an instance silent for three is gone.")
    rpc_concurrency: int = Field(
        default=64, gt=0, description="RPC calls one plugin's queue runs at once per instance."
    )
    task_concurrency: int = Field(
        default=16, gt=0, description="Async tasks one worker process runs at once.",
    )
    task_processes: int = Field(  # looked up on each use, so a test can stand in a limit
        default_factory=lambda: usable_cpus(), gt=0,
        description="Processes of a worker's pool for CPU-bound tasks (one task each).",
        json_schema_extra={"default_shown": "usable CPUs"},
    )
    task_ledger_retention: float = Field(
        default=86400.0, ge=0,
        description="Seconds the servers keep a task's state and result after its last change "
        "(`mesh tasks show`, handles rebuilt from an id); 0 turns the task ledger off.")
    task_ledger_max_result: int = Field(
        default=64 * 1024, ge=0,
        description="The largest task result, in bytes, the task ledger keeps; a larger one "
        "is recorded as too large to keep.")
    action_id_retention: float = Field(
        default=7 * 86400.0, gt=0,
        description="Seconds the servers remember the id of an action a device pushed with "
        "one (applied once, a repeat answered with the first result); an action made longer "
        "ago is refused with `expired`.")
    action_clock_skew: float = Field(
        default=300.0, ge=0,
        description="Seconds an action's `made_at` may be ahead of the server's clock: an "
        "action made further in the future is refused, and ids are kept this much longer. An "
        "action sent with `sent_at` (mesh.js) has its time put on the gateway's clock, whatever "
        "the device's clock says ([devices.md](devices.md#offline)).")
    notification_retention: float = Field(
        default=30 * 86400.0, gt=0,
        description="Seconds the servers keep a notification after it was sent, read or not.")
    notification_webhook_url: str | None = Field(
        default=None, pattern=r"^https?://", max_length=2000,
        description="Where the webhook channel POSTs every notification (signed, retried by "
        "a worker); unset: no webhook. Set it on the servers and the workers alike.")
    notification_webhook_secret: SecretStr | None = Field(
        default=None, description="The HMAC-SHA256 key of the webhook's X-Mesh-Signature; "
        "needed with MESH_NOTIFICATION_WEBHOOK_URL.")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto", description="The services' event loop: `auto` is uvloop where it is "
        "installed (it is, on Linux and macOS), else asyncio's.")
    shutdown_timeout: float = Field(
        default=10.0, ge=0, description="Seconds in-flight handlers and tasks get after SIGTERM."
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for the broker when connecting.")
    client_host: str = Field(default="127.0.0.1",
                             description="Where the client's device gateway listens.")
    client_port: int = Field(default=8000, ge=0, le=65535,
                             description="The device gateway's port; 0 picks a free one.")
    client_allowed_origins: list[str] = Field(
        default_factory=list,
        description="JSON list of the origins (`https://host:port`) whose pages may open the "
        "device WebSocket; empty: only pages the client service served itself (same host).",
    )
    observable_linger: float = Field(
        default=30.0, ge=0,
        description="Seconds a client keeps a selector upstream after its last device left.",
    )
    notify_concurrency: int = Field(
        default=4, gt=0, le=1000,
        description="Provider runs a server makes at once to refresh watched selectors after "
        "notifies (all topics together); the notify itself returns at once.",
    )
    admin_host: str = Field(default="127.0.0.1",
                            description="Where the server's admin API listens.")
    admin_port: int = Field(default=8010, ge=0, le=65535,
                            description="The admin API's port; 0 picks a free one.")
    admin_token: SecretStr | None = Field(
        default=None, min_length=1,  # an empty token would let every request in
        description="Bearer token of the admin API; unset: generated once into the data dir.",
    )
    admin_password: SecretStr | None = Field(
        default=None, min_length=8,
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
    sign_in_allowance: int = Field(
        default=5, ge=1, le=1000,
        description="Wrong passwords one address may try for one username within "
        "MESH_SIGN_IN_WINDOW_S before its sign-ins are refused (`throttled`); attempts in "
        "flight count.")
    sign_in_ceiling: int = Field(
        default=100, ge=1, le=100_000,
        description="Wrong passwords for one username from all addresses within the window, "
        "after which only addresses the user signed in from before may try.")
    sign_in_window_s: float = Field(
        default=300.0, gt=0, le=86_400,
        description="The window the sign-in allowance and ceiling count in (seconds).")
    sign_in_concurrency: int = Field(
        default=2, ge=1, le=256,
        description="Password checks the server runs at once (each hashes: CPU and memory).")
    sign_in_queue: int = Field(
        default=16, ge=0, le=10_000,
        description="Sign-ins that may wait for a check; past that they are refused at once "
        "(`throttled`, reason `busy`; 429 over HTTP).")
    admin_url: str | None = Field(
        default=None, description="Where `mesh call` finds the admin API when no broker is set.")
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (with its chain) the client service and the "
        "admin API serve HTTPS with, beside MESH_TLS_KEY_FILE. Unset: plain HTTP.")
    tls_key_file: Path | None = Field(
        default=None, description="PEM private key of MESH_TLS_CERT_FILE (unencrypted).")
    http_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="The largest request body the admin API and the "
        "client service read (wheel uploads: MESH_UPLOAD_MAX_BYTES); checked before auth.")
    upload_max_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="The largest plugin wheel the admin API takes.")
    device_max_frame_bytes: int = Field(
        default=64 * 1024, gt=0, description="The largest WebSocket frame a device may send.")
    device_max_subscriptions: int = Field(
        default=200, gt=0, description="Subscriptions one device connection may hold.")
    device_sign_in_deadline_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="A device connection not signed in this long after it opened is closed "
        "(`sign_in_deadline`).")
    device_max_connections_per_address: int = Field(
        default=256, gt=0,
        description="Device connections one address may hold open at once; past it a new one "
        "is closed at once (`too_many_connections`). Benchmarks opening thousands of devices "
        "from one address raise it.")
    device_max_upstream_per_connection: int = Field(
        default=400, gt=0,
        description="Distinct selectors one device connection may have the client service "
        "watch upstream within MESH_OBSERVABLE_LINGER (subscribed or lately unsubscribed).")
    device_max_upstream_per_user: int = Field(
        default=1000, gt=0,
        description="The same, for all the connections of one user.")
    device_max_upstream: int = Field(
        default=50_000, gt=0,
        description="Selectors the client service's topic cache may watch upstream at once.")
    device_max_in_flight: int = Field(
        default=64, gt=0,
        description="Requests one device connection may have in flight at once; past it a "
        "request is refused (`too_many_requests`).")
    tracing: bool = Field(
        default=False, description="Trace every call, task and device request with "
        "OpenTelemetry (the `tracing` extra), exported over OTLP/HTTP; the OTEL_* variables "
        "apply (docs/operations.md, Tracing). Off: no cost at all.")
    otlp_endpoint: str | None = Field(
        default=None, description="Where traces go: the OTLP/HTTP base URL "
        "(`http://collector:4318`; traces are posted to `/v1/traces`). Unset: "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else "
        "`http://localhost:4318`.")
    log_format: Literal["auto", "console", "json"] = Field(
        default="auto", description="`json` lines, `console` for people; `auto`: console on a "
        "terminal, JSON otherwise.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR (any case).")
    plugin_log_levels: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
                            Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(
        default_factory=dict, description="A level per plugin at start, as JSON "
        '(`{"tutorial": "DEBUG"}`); the admin API changes them while services run.')
    log_file: Path | None = Field(
        default=None, description="Also write JSON lines to this file, rotated by size; "
        "`{service}` and `{pid}` in it are filled in (one file per process). Unset: stderr "
        "only.")
    log_file_max_bytes: int = Field(
        default=10 * 2**20, ge=4096, description="Rotate the log file when it would grow "
        "past this many bytes (at least 4096).")
    log_file_backups: int = Field(
        default=5, ge=0, le=1000, description="Rotated log files kept (`.1` newest); 0: the "
        "file is emptied when full.")

    @field_validator("broker_url")
    @classmethod
    def _broker_urls(cls, value: str | None) -> str | None:
        if value and value.strip():
            split_broker_urls(value)  # a clear error now, not a failed connect later
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> MeshSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("MESH_TLS_CERT_FILE and MESH_TLS_KEY_FILE go together: set both "
                             "(HTTPS) or neither (HTTP)")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            check_key_pair(self.tls_cert_file, self.tls_key_file)
        return self

    @property
    def http_scheme(self) -> str:
        """How the client service and the admin API are reached: `https` with a certificate."""
        return "http" if self.tls is None else "https"

    @property
    def tls(self) -> tuple[Path, Path] | None:
        """The certificate and key files, when the web servers speak HTTPS."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return self.tls_cert_file, self.tls_key_file

    def admin_address(self) -> str:
        """The admin API's base URL, as the command line reaches it."""
        return (self.admin_url
                or f"{self.http_scheme}://{self.admin_host}:{self.admin_port}").rstrip("/")

    @field_validator("event_loop")
    @classmethod
    def _uvloop_installed(cls, value: str) -> str:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed (pip install uvloop), or choose auto")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
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
