"""`mesh plugin …`: what is installed, in what order it loads, and why anything was refused."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mesh.config import SERVICE_KINDS, MeshSettings
from mesh.plugin.discovery import discover
from mesh.plugin.ordering import plan_load_order

plugin_app = typer.Typer(help="Inspect plugins.", no_args_is_help=True)


@plugin_app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Every discovered plugin: version, services, dependencies, load order, refusals."""
    settings = MeshSettings()
    sources = discover()
    manifests = {s.name: s.manifest for s in sources if s.manifest is not None}
    plan = plan_load_order(
        manifests, disabled=settings.disabled_plugins,
        broken={s.name: s.error or "" for s in sources if s.manifest is None},
    )
    rows = []
    for source in sources:
        m = source.manifest
        if source.name in plan.disabled:
            status = "disabled"
        elif source.name in plan.refused:
            status = "refused"
        else:
            status = "ok"
        rows.append({
            "name": source.name,
            "title": m.title if m else None,
            "version": m.version if m else None,
            "services": [k for k in SERVICE_KINDS if m and k in m.services],
            "depends": dict(m.depends) if m else {},
            "distribution": source.distribution,
            "status": status,
            "reason": plan.refused.get(source.name),
            "load_position": plan.order.index(source.name) + 1
            if source.name in plan.order else None,
        })
    if as_json:
        typer.echo(json.dumps({"plugins": rows, "load_order": plan.order}, indent=2))
        return
    if not rows:
        typer.echo("no plugins installed (entry-point group mesh.plugins)")
        return
    header = f"{'#':>2}  {'name':<16}{'version':<10}{'services':<28}{'depends':<24}status"
    typer.echo(header)
    for row in sorted(rows, key=lambda r: (r["load_position"] or 999, r["name"])):
        depends = ", ".join(f"{k}{v}" for k, v in row["depends"].items()) or "-"
        pos = str(row["load_position"]) if row["load_position"] else "-"
        typer.echo(
            f"{pos:>2}  {row['name']:<16}{row['version'] or '?':<10}"
            f"{','.join(row['services']) or '-':<28}{depends:<24}{row['status']}"
        )
    typer.echo(f"\nload order: {' → '.join(plan.order) or '(none)'}")
    for row in rows:
        if row["reason"]:
            typer.echo(f"refused {row['name']}: {row['reason']}")
