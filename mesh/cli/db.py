"""`mesh db …`: each plugin's schema, its revision, and moving it up or down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mesh.cli.errors import command_group, fail, settings_or_exit

if TYPE_CHECKING:
    from mesh.config import MeshSettings
    from mesh.storage.migrations import Migrator, UpgradeResult

db_app = command_group("Plugin database schemas and their migrations.")
T = TypeVar("T")
PluginOption = Annotated[str, typer.Option("--plugin", "-p", help="The plugin's name.")]


def with_migrator(work: Callable[[Migrator], Awaitable[T]]) -> T:
    """Run `work` with a migrator over every installed, enabled plugin that has storage."""
    from mesh.platform.store import platform_storage
    from mesh.plugin.plugin_set import PluginSet
    from mesh.storage.database import Database, database_url
    from mesh.storage.migrations import MigrationError, Migrator

    settings: MeshSettings = settings_or_exit()
    plugins = PluginSet.installed(disabled=settings.disabled_plugins)

    async def run() -> T:
        database = Database(database_url(settings))
        try:
            return await work(Migrator.for_plugins(database, plugins,
                                                   first=[platform_storage()]))
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except MigrationError as exc:
        raise fail(str(exc), 1) from None
    except OSError as exc:
        raise fail(f"cannot reach the database: {exc}", 1) from None


@db_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per plugin: schema, current revision, head and pending revisions; orphaned schemas."""

    async def work(migrator: Migrator) -> tuple[list[dict[str, object]], list[str]]:
        return [asdict(s) for s in await migrator.status()], await migrator.orphans()

    rows, orphans = with_migrator(work)
    if as_json:
        typer.echo(json.dumps({"plugins": rows, "orphans": orphans}, indent=2))
        return
    typer.echo(f"{'plugin':<16}{'schema':<20}{'current':<10}{'head':<10}{'state':<18}pending")
    for row in rows:
        current = ",".join(row["current"]) or "-"  # type: ignore[arg-type]
        head = ",".join(row["heads"]) or "-"  # type: ignore[arg-type]
        pending = ", ".join(row["pending"]) or "-"  # type: ignore[arg-type]
        typer.echo(f"{row['plugin']!s:<16}{row['schema']!s:<20}{current:<10}{head:<10}"
                   f"{row['state']!s:<18}{pending}")
        if row["error"]:
            typer.echo(f"  {row['error']}")
    for schema in orphans:
        typer.echo(f"orphan schema {schema}: no installed plugin owns it (left untouched)")


@db_app.command("upgrade")
def upgrade(
    plugin: Annotated[str | None, typer.Option("--plugin", "-p", help="Only this plugin.")] = None,
) -> None:
    """Bring every plugin's schema (or one plugin's) to head."""

    from mesh.storage.migrations import UpgradeResult

    async def work(migrator: Migrator) -> UpgradeResult:
        if plugin is None:
            return await migrator.upgrade_all()
        await migrator.upgrade(plugin)
        return UpgradeResult()

    result = with_migrator(work)
    for name, error in {**result.failed, **result.refused}.items():
        typer.echo(f"error: {name}: {error}", err=True)
    if not result.ok:
        raise typer.Exit(1)
    typer.echo("up to date")


@db_app.command("downgrade")
def downgrade(
    plugin: PluginOption,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for none.")],
) -> None:
    """Move one plugin's schema down to REVISION."""

    async def work(migrator: Migrator) -> None:
        await migrator.downgrade(plugin, revision)

    with_migrator(work)
    typer.echo(f"{plugin} is at {revision}")


@db_app.command("revision")
def revision(
    plugin: PluginOption,
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does.")],
    autogenerate: Annotated[bool, typer.Option(
        "--autogenerate", help="Compare the plugin's models with its schema (its schema only).",
    )] = False,
) -> None:
    """Write a new revision into the plugin's migrations folder."""

    async def work(migrator: Migrator) -> str:
        return str(await migrator.revision(plugin, message, autogenerate=autogenerate))

    typer.echo(f"wrote {with_migrator(work)}")
