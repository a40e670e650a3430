"""The `mesh` command. Exit codes: 0 success, 1 the call or service failed, 2 bad input.

`mesh --help` and `mesh health` run every 10 s in every container, so the command modules
import what a command needs inside it: at start only typer and mesh's light modules load
(tests/mesh/cli/test_cli.py holds the list of what `mesh --help` may import)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mesh.cli.broker import broker_app
from mesh.cli.call import call_command
from mesh.cli.contracts import contracts_app
from mesh.cli.db import db_app
from mesh.cli.errors import fail, settings_or_exit
from mesh.cli.plugins import plugin_app
from mesh.cli.tasks import tasks_app
from mesh.names import SERVICE_KINDS

if TYPE_CHECKING:
    from mesh.config import MeshSettings

app = typer.Typer(
    rich_markup_mode=None,  # plain help, as command_group says
    help="mesh: a plugin platform on a RabbitMQ service mesh.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(plugin_app, name="plugin")
app.add_typer(db_app, name="db")
app.add_typer(contracts_app, name="contracts")
app.add_typer(tasks_app, name="tasks")
app.add_typer(broker_app, name="broker")
app.command("call")(call_command)


def logging_options(settings: MeshSettings, service: str) -> dict[str, Any]:
    """configure_logging's arguments from the settings; `service` names this process's log
    file."""
    from mesh.log import log_file_path

    return {"level": settings.log_level, "fmt": settings.log_format,
            "file": log_file_path(settings.log_file, service) if settings.log_file else None,
            "max_bytes": settings.log_file_max_bytes, "backups": settings.log_file_backups,
            "plugin_levels": settings.plugin_log_levels}


def known_service(service: str) -> None:
    if service not in SERVICE_KINDS:
        raise fail(f"unknown service {service!r}; choose one of "
                   f"{', '.join(SERVICE_KINDS)}")


@app.command()
def up() -> None:
    """Run the whole mesh: embedded in one process, or four processes with MESH_BROKER_URL."""
    from mesh import loop
    from mesh.log import configure_logging

    settings = settings_or_exit()
    configure_logging(**logging_options(settings, "up" if settings.broker_url else "mesh"))
    if settings.broker_url:
        from mesh.supervisor import start_supervisor

        start_supervisor(settings)  # becomes the supervisor: does not return
    from mesh.embedded import run_embedded

    loop.run(run_embedded(settings), settings.event_loop)


@app.command()
def run(
    service: Annotated[str, typer.Argument(help="server, client, agent or worker")],
) -> None:
    """Run one service against the broker at MESH_BROKER_URL."""
    known_service(service)
    settings = settings_or_exit()
    if not settings.broker_url:
        raise fail("`mesh run` joins a broker: set MESH_BROKER_URL "
                   "(or use `mesh up` for the embedded mesh)")
    from mesh import loop
    from mesh.log import configure_logging

    configure_logging(**logging_options(settings, service))
    import structlog

    from mesh.bus import rabbit_transport
    from mesh.programs import ProgramMissing, service_class
    from mesh.service import new_instance_id

    instance = settings.instance_id or new_instance_id(service)
    structlog.contextvars.bind_contextvars(service=service, instance=instance)  # every line
    try:
        program = service_class(service)
    except ProgramMissing as exc:
        raise fail(str(exc), 1) from None
    svc = program(settings, rabbit_transport(settings, instance), instance_id=instance)
    try:
        loop.run(svc.run_until_signalled(), settings.event_loop)
    except (OSError, ConnectionError) as exc:
        raise fail(f"cannot join the bus: {exc}", 1) from None


@app.command()
def health(
    service: Annotated[str, typer.Argument(help="server, client, agent or worker")],
) -> None:
    """Exit 0 if the service running with this data directory is healthy, 1 if not: the
    container health check. Reads the service's health file; the server's /readyz and the
    client's /healthz too."""
    known_service(service)
    from mesh.health import Unhealthy, check_health

    try:
        record = check_health(settings_or_exit().data_dir, service)
    except Unhealthy as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"healthy: {record.instance}")


@app.command()
def version() -> None:
    """Print mesh's version."""
    from mesh import __version__

    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
