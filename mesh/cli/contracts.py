"""`mesh contracts …`: the catalog of every RPC, action and topic, and the AsyncAPI document.

Both read the installed plugins' contracts only; neither joins the bus. A plugin whose contract
cannot be loaded is reported on stderr and makes the command exit 1, after printing what could
be built from the others, so scripts notice an incomplete catalog.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mesh.cli.errors import command_group, fail, settings_or_exit

if TYPE_CHECKING:
    from mesh.catalog import Catalog
    from mesh.config import MeshSettings

contracts_app = command_group("The contract catalog and the AsyncAPI document of the mesh.")


def _catalog(settings: MeshSettings) -> Catalog:
    from mesh.catalog import build_catalog
    from mesh.plugin.plugin_set import PluginSet

    return build_catalog(PluginSet.installed(disabled=settings.disabled_plugins))


def _exit_if_broken(catalog: Catalog) -> None:
    for plugin in catalog.broken:
        typer.echo(f"error: the contract of plugin {plugin.name} ({plugin.contract}) cannot be "
                   f"loaded: {plugin.error}", err=True)
    if catalog.broken:
        raise typer.Exit(1)


@contracts_app.command("list")
def list_contracts(
    as_json: Annotated[bool, typer.Option("--json", help="The catalog as one JSON object, "
                                          "JSON Schemas included.")] = False,
) -> None:
    """Every RPC, action, topic, task and notification of the enabled plugins: who serves it,
    who may call it, and the permission a device or person needs."""
    catalog = _catalog(settings_or_exit())
    if as_json:
        typer.echo(catalog.model_dump_json(indent=2))
        _exit_if_broken(catalog)
        return
    if catalog.entries:
        width = max(len(e.qualname) for e in catalog.entries) + 2
        needs = max(len(e.permission or "-") for e in catalog.entries) + 2
        kinds = max(len(e.kind) for e in catalog.entries) + 2
        typer.echo(f"{'kind':<{kinds}}{'name':<{width}}{'service':<9}{'callers':<14}"
                   f"{'devices':<9}{'permission':<{needs}}{'timeout':<9}errors")
    from mesh.catalog import NotificationEntry

    for e in catalog.entries:
        typer.echo(
            f"{e.kind:<{kinds}}{e.qualname:<{width}}{e.service:<9}"
            f"{','.join(e.callers) if e.callers is not None else 'any':<14}"
            f"{'yes' if e.devices else '-':<9}{e.permission or '-':<{needs}}"
            f"{f'{e.timeout:g}s':<9}"
            f"{', '.join(x.code for x in e.errors) or '-'}"
            + (f"  group {e.group} ({'followed' if e.followed else 'not followed'} by "
               "default)" if isinstance(e, NotificationEntry) else "")
        )
    served = [p.name for p in catalog.plugins if p.status == "ok"]
    typer.echo(f"\n{len(catalog.entries)} entries from {len(served)} plugins"
               f"{': ' + ', '.join(served) if served else ''}")
    for p in catalog.plugins:
        if p.status in ("disabled", "refused"):
            typer.echo(f"not in the catalog: {p.name} ({p.status}: {p.error})")
    _echo_hooks(catalog)
    _exit_if_broken(catalog)


def _echo_hooks(catalog: Catalog) -> None:
    """The hooks on each entry, in the order they run (they run only once an administrator
    grants them: the admin page and `GET /api/v1/hooks` say which are)."""
    if not catalog.hooks:
        return
    typer.echo("\nhooks, in the order they run (each needs an administrator's grant):")
    width = max(len(h.entry) for h in catalog.hooks) + 2
    for h in catalog.hooks:
        where = f"{h.when} #{h.position}" if h.position is not None else f"{h.when} -"
        typer.echo(f"  {h.entry:<{width}}{where:<11}{h.hook}"
                   f"{f'  (order {h.order})' if h.order else ''}"
                   f"{f'  left out: {h.left_out}' if h.left_out else ''}")


@contracts_app.command("asyncapi")
def asyncapi(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the document to this file instead of stdout.",
    )] = None,
) -> None:
    """The AsyncAPI 3.0 document of the whole mesh, as JSON."""
    from mesh.asyncapi import build_asyncapi

    settings = settings_or_exit()
    catalog = _catalog(settings)
    try:
        document = build_asyncapi(
            catalog, broker_url=settings.broker_url, exchange=settings.exchange,
            heartbeat_interval=settings.heartbeat_interval,
        )
    except ValueError as exc:
        raise fail(f"invalid configuration: MESH_BROKER_URL: {exc}") from None
    text = json.dumps(document, indent=2)
    if output is None:
        typer.echo(text)
    else:
        try:
            output.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
        typer.echo(f"wrote {output}: {len(document['channels'])} channels, "
                   f"{len(document['operations'])} operations", err=True)
    _exit_if_broken(catalog)
