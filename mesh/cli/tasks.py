"""`mesh tasks …`: the tasks in the dead-letter queue, and queueing one again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from mesh.bus.transport import ChannelError, TransportClosed
from mesh.cli.errors import fail, settings_or_exit
from mesh.tasks.admin import DeadLetters

tasks_app = typer.Typer(help="Durable tasks: the dead-letter queue.", no_args_is_help=True)
T = TypeVar("T")


def with_dead_letters(work: Callable[[DeadLetters], Awaitable[T]], *,
                      limit: int | None = None) -> T:
    from mesh.bus.rabbitmq import RabbitTransport
    from mesh.service import new_instance_id

    settings = settings_or_exit()
    if not settings.broker_url:
        raise fail("set MESH_BROKER_URL: `mesh tasks` reads the broker's dead-letter "
                   "queue")

    async def run() -> T:
        transport = RabbitTransport(settings.broker_url or "", settings.exchange,
                                    connection_name=new_instance_id("cli"), connect_timeout=5)
        await transport.connect()
        try:
            async with DeadLetters(transport, limit=limit) as dead:
                return await work(dead)
        finally:
            await transport.close()

    try:
        return asyncio.run(run())
    except (OSError, TransportClosed, ChannelError) as exc:
        raise fail(f"cannot read the dead-letter queue: {exc}", 1) from None


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@tasks_app.command("dead")
def dead(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many.", min=1)] = 1000,
) -> None:
    """List the dead-lettered tasks, oldest first, with their last error."""

    async def work(letters: DeadLetters) -> list[dict[str, object]]:
        return [t.as_dict() for t in letters.tasks()]

    found = with_dead_letters(work, limit=limit)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("no dead-lettered tasks")
        return
    typer.echo(f"{'task id':<34}{'task':<28}{'dead at (UTC)':<21}{'tries':>5}  error")
    for row in found:
        typer.echo(f"{row['task_id']!s:<34}{row['task']!s:<28}{_when(row['dead_at_ms'])!s:<21}"  # type: ignore[arg-type]
                   f"{row['attempts']!s:>5}  {row['code']}: {row['message']}")
    typer.echo(f"\n{len(found)} dead-lettered; `mesh tasks retry ID` queues one again")


@tasks_app.command("retry")
def retry(task_id: Annotated[str, typer.Argument(help="The task id (from `mesh tasks dead`).")]
          ) -> None:
    """Queue a dead-lettered task again, with its attempts starting over."""

    async def work(letters: DeadLetters) -> str | None:
        found = await letters.retry(task_id)
        return None if found is None else found.task

    name = with_dead_letters(work)
    if name is None:
        raise fail(f"no dead-lettered task {task_id!r} (see `mesh tasks dead`)", 1)
    typer.echo(f"queued {name} {task_id} again")


@tasks_app.command("purge-dead")
def purge_dead(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete them.")] = False,
) -> None:
    """Delete every dead-lettered task (they are gone for good)."""
    if not yes:
        raise fail("this deletes every dead-lettered task for good; add --yes")

    async def work(letters: DeadLetters) -> int:
        return await letters.purge()

    typer.echo(f"deleted {with_dead_letters(work)} dead-lettered tasks")
