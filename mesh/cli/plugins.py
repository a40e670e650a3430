"""`mesh plugin …`: what is installed, in what order it loads, and why anything was refused;
and a new plugin that works at once."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from mesh.cli.errors import fail, settings_or_exit
from mesh.names import SERVICE_KINDS
from mesh.plugin.plugin_set import PluginSet

plugin_app = typer.Typer(help="Inspect plugins, and make new ones.", no_args_is_help=True)


@dataclass
class PluginRow:
    name: str
    title: str | None
    version: str | None
    services: list[str]
    depends: dict[str, str]
    distribution: str | None
    status: str  # ok, disabled or refused
    reason: str | None
    load_position: int | None


def plugin_rows(plugins: PluginSet) -> tuple[list[PluginRow], list[str]]:
    rows = []
    for source in plugins:
        m = source.manifest
        rows.append(PluginRow(
            name=source.name,
            title=m.title if m else None,
            version=m.version if m else None,
            services=[k for k in SERVICE_KINDS if m and k in m.services],
            depends=dict(m.depends) if m else {},
            distribution=source.distribution,
            status=plugins.status(source.name),
            reason=plugins.refused.get(source.name),
            load_position=plugins.order.index(source.name) + 1
            if source.name in plugins.order else None,
        ))
    return rows, plugins.order


@plugin_app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Every discovered plugin: version, services, dependencies, load order, refusals."""
    settings = settings_or_exit()
    rows, order = plugin_rows(PluginSet.installed(disabled=settings.disabled_plugins))
    if as_json:
        data = {"plugins": [asdict(r) for r in rows], "load_order": order}
        typer.echo(json.dumps(data, indent=2))
        return
    if not rows:
        typer.echo("no plugins installed (entry-point group mesh.plugins)")
        return
    typer.echo(f"{'#':>2}  {'name':<16}{'version':<10}{'services':<28}{'depends':<24}status")
    for row in sorted(rows, key=lambda r: (r.load_position or 10**6, r.name)):
        depends = ", ".join(f"{k}{v}" for k, v in row.depends.items()) or "-"
        position = str(row.load_position) if row.load_position else "-"
        typer.echo(
            f"{position:>2}  {row.name:<16}{row.version or '?':<10}"
            f"{','.join(row.services) or '-':<28}{depends:<24}{row.status}"
        )
    typer.echo(f"\nload order: {' → '.join(order) or '(none)'}")
    for row in rows:
        if row.reason:
            typer.echo(f"refused {row.name}: {row.reason}")


@plugin_app.command("new")
def new_plugin(
    name: Annotated[str, typer.Argument(help="The plugin's name: lower-case letters, digits, _.")],
    folder: Annotated[Path | None, typer.Option(
        "--dir", help="Where to make it (must not exist). Default: plugins/NAME.")] = None,
    services: Annotated[str, typer.Option(
        help="The services it runs a part on, comma-separated: server, client, agent, worker."
    )] = "server",
    no_storage: Annotated[bool, typer.Option(
        "--no-storage", help="No tables of its own: no models, no migrations.")] = False,
    ui: Annotated[bool | None, typer.Option(
        "--ui/--no-ui", help="With a device screen and an admin screen, and their tests. "
        "Default: when it runs a part on the client.")] = None,
) -> None:
    """Make a plugin that works at once: package, manifest, contract, a part per service,
    storage with its first migration, settings, screens, and tests on mesh's testing kit."""
    from mesh.scaffold import ScaffoldError, new_plugin, parse_services

    target = folder if folder is not None else Path("plugins") / name
    try:
        written = new_plugin(name, target, parse_services(services), storage=not no_storage,
                             ui=ui)
    except ScaffoldError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc}", 1) from None
    typer.echo(f"made plugin {name} in {target} ({len(written)} files). Next:\n"
               f"  pip install -e {target}\n"
               f"  mesh plugin list                 # shows {name}\n"
               f"  pytest {target}\n"
               f"  mesh up")
