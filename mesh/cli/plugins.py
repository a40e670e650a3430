"""`mesh plugin …`: what is installed, in what order it loads, and why anything was refused."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated

import typer

from mesh.config import SERVICE_KINDS, MeshSettings
from mesh.plugin.discovery import discover
from mesh.plugin.ordering import plan_load_order

plugin_app = typer.Typer(help="Inspect plugins.", no_args_is_help=True)


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


def plugin_rows(settings: MeshSettings) -> tuple[list[PluginRow], list[str]]:
    sources = discover()
    manifests = {s.name: s.manifest for s in sources if s.manifest is not None}
    plan = plan_load_order(
        manifests, disabled=settings.disabled_plugins,
        broken={s.name: s.error or "" for s in sources if s.manifest is None},
    )
    rows = []
    for source in sources:
        m = source.manifest
        status = ("disabled" if source.name in plan.disabled
                  else "refused" if source.name in plan.refused else "ok")
        rows.append(PluginRow(
            name=source.name,
            title=m.title if m else None,
            version=m.version if m else None,
            services=[k for k in SERVICE_KINDS if m and k in m.services],
            depends=dict(m.depends) if m else {},
            distribution=source.distribution,
            status=status,
            reason=plan.refused.get(source.name),
            load_position=plan.order.index(source.name) + 1 if source.name in plan.order else None,
        ))
    return rows, plan.order


@plugin_app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Every discovered plugin: version, services, dependencies, load order, refusals."""
    from mesh.cli.main import settings_or_exit  # main imports this module

    rows, order = plugin_rows(settings_or_exit())
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
