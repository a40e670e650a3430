"""`mesh plugin …`: what is installed, in what order it loads, and why anything was refused;
and a new plugin that works at once."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mesh.cli.admin import admin_error, admin_request
from mesh.cli.errors import command_group, fail, settings_or_exit
from mesh.names import SERVICE_KINDS

if TYPE_CHECKING:
    from mesh.plugin.plugin_set import PluginSet

plugin_app = command_group("Inspect plugins, make new ones, and upload, enable, disable, "
                           "uninstall or roll them back (through the admin API).")


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
    from mesh.plugin.plugin_set import PluginSet

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


# -- the lifecycle, through the admin API (the server does the work, on every service) -------


def _plugin_path(name: str, action: str = "") -> str:
    """The admin API path of a plugin, refusing what cannot be a plugin's name (a path trick
    or a typo) before any request."""
    from mesh.plugin.manifest import NAME

    if not re.fullmatch(NAME, name):
        raise fail(f"{name!r} is not a plugin name (lower-case letters, digits and _)")
    return f"/api/v1/plugins/{name}{'/' + action if action else ''}"


def _admin(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = admin_request(settings_or_exit(), method, path, **kwargs)
    if response.status_code >= 300:
        raise admin_error(response)
    body: dict[str, Any] = response.json()
    return body


@plugin_app.command("upload")
def upload(
    wheel: Annotated[Path, typer.Argument(help="The plugin's wheel (.whl).")],
    allow_breaking: Annotated[bool, typer.Option(
        "--allow-breaking", help="Upgrade even if the new contract breaks the installed "
        "version's callers (an RPC, topic or task removed, a model changed incompatibly)."
    )] = False,
) -> None:
    """Install a plugin wheel on the server, migrate it and start it on every service (an
    upgrade when an older version is installed)."""
    if not wheel.is_file():
        raise fail(f"{wheel}: no such file")
    done = _admin("POST", "/api/v1/plugins",
                  params={"filename": wheel.name, "allow_breaking": allow_breaking},
                  content=wheel.read_bytes(), timeout=600,
                  headers={"Content-Type": "application/octet-stream"})
    was = f" (was {done['previous_version']})" if done.get("previous_version") else ""
    typer.echo(f"installed {done['plugin']} {done['version']}{was} on "
               f"{', '.join(done['services'])}")


@plugin_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="The plugin.")]) -> None:
    """Start the plugin on every service that runs it, now and after restarts."""
    done = _admin("POST", _plugin_path(name, "enable"))
    typer.echo(f"enabled {', '.join(done['changed'])}")


@plugin_app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="The plugin.")],
    cascade: Annotated[bool, typer.Option(help="Disable the plugins that need it too.")] = False,
) -> None:
    """Stop the plugin on every service, now and after restarts."""
    done = _admin("POST", _plugin_path(name, "disable"), params={"cascade": cascade})
    typer.echo(f"disabled {', '.join(done['changed'])}")


def _describe_impact(impact: dict[str, Any], purge: bool) -> list[str]:
    schema = impact.get("schema_name")
    data = ("no schema" if not schema else
            f"schema {schema} DROPPED with all its data" if purge else
            f"schema {schema} kept (revision {', '.join(impact['schema_revision']) or '-'})")
    return [f"plugin      {impact['plugin']} {impact['version'] or '?'} "
            f"({impact['distribution'] or 'no distribution'})",
            f"services    {', '.join(impact['services']) or '-'}",
            f"dependents  {'; '.join(impact['dependents']) or 'none'}",
            f"data        {data}; settings "
            f"{'none' if not impact['settings_kept'] else 'forgotten' if purge else 'kept'}",
            f"kept wheels {', '.join(impact['kept_versions']) or 'none'}",
            *(f"blocked:    {b}" for b in impact["blockers"])]


@plugin_app.command("impact")
def impact(
    name: Annotated[str, typer.Argument(help="The plugin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What uninstalling the plugin would do, and what stands in its way."""
    found = _admin("GET", _plugin_path(name, "impact"))
    typer.echo(json.dumps(found, indent=2) if as_json else
               "\n".join(_describe_impact(found, purge=False)))


@plugin_app.command("uninstall")
def uninstall(
    name: Annotated[str, typer.Argument(help="The plugin (one that was uploaded).")],
    purge: Annotated[bool, typer.Option(
        "--purge", help="Drop its schema (all its data) and forget its settings.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do it; without it, only show the impact."
                                      )] = False,
) -> None:
    """Show what uninstalling the plugin does; with --yes, stop it on every service and take
    it out of every environment. Its data is kept unless --purge."""
    path = _plugin_path(name)
    found = _admin("GET", f"{path}/impact")
    for line in _describe_impact(found, purge):
        typer.echo(line)
    if found["blockers"]:
        raise fail(found["blockers"][0], 1)
    if not yes:
        raise fail(f"nothing changed; add --yes to uninstall {name}"
                   f"{' and drop its data' if purge else ''}")
    params: dict[str, Any] = {"purge": purge, **({"confirm": name} if purge else {})}
    done = _admin("POST", f"{path}/uninstall", params=params, timeout=600)
    typer.echo(f"uninstalled {done['plugin']} {done['version']}"
               f"{' and dropped its data' if done['purged'] else '; its data is kept'}")


@plugin_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="The plugin (one that was uploaded).")],
    version: Annotated[str | None, typer.Option(
        help="An older kept version; default: the newest older one.")] = None,
) -> None:
    """Go back to the version installed before: the schema moved down by the installed
    version's scripts, the kept older wheel installed and started on every service."""
    params = {"version": version} if version is not None else {}
    done = _admin("POST", _plugin_path(name, "rollback"), params=params, timeout=600)
    revision = done.get("schema_revision")
    typer.echo(f"rolled back {done['plugin']} {done['replaced_version']} -> {done['version']}"
               f"{f' (schema at {revision})' if revision else ''}")
