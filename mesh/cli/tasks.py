"""`mesh tasks …`: one task's state from the task ledger, the tasks in the dead-letter queue,
and queueing one again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mesh.cli.admin import admin_error, admin_request
from mesh.cli.errors import command_group, fail, settings_or_exit
from mesh.cli.lookup import contract_of

if TYPE_CHECKING:
    from mesh.config import MeshSettings
    from mesh.contract import Task
    from mesh.tasks.admin import DeadLetters
    from mesh.tasks.ledger import TaskRecord

tasks_app = command_group("Durable tasks: queue one, one task's state, the dead-letter "
                          "queue.")
T = TypeVar("T")


def with_dead_letters(work: Callable[[DeadLetters], Awaitable[T]], *,
                      limit: int | None = None) -> T:
    from mesh.bus.rabbitmq import RabbitTransport
    from mesh.bus.transport import ChannelError, TransportClosed
    from mesh.service import new_instance_id
    from mesh.tasks.admin import DeadLetters

    settings = settings_or_exit()
    if not settings.broker_url:
        raise fail("set MESH_BROKER_URL: `mesh tasks` reads the broker's dead-letter "
                   "queue")

    async def run() -> T:
        transport = RabbitTransport(settings.broker_url or "", settings.exchange,
                                    connection_name=new_instance_id("cli"), connect_timeout=5,
                                    cluster=settings.broker_cluster)
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


@tasks_app.command("show")
def show(
    task_id: Annotated[str, typer.Argument(help="The task id (a handle's task_id).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what the task ledger knows of one task: state, attempts, times, result or error."""
    from mesh.errors import RpcError
    from mesh.tasks.ledger import UNKNOWN, check_task_id

    try:
        check_task_id(task_id)
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = settings_or_exit()
    try:
        record = (asyncio.run(_record_from_bus(settings.broker_url, task_id))
                  if settings.broker_url else _record_from_admin(settings, task_id))
    except RpcError as exc:
        raise fail(f"cannot read the task ledger: {exc.code}: {exc.message}", 1) from None
    except OSError as exc:
        raise fail(f"cannot reach the broker: {exc}", 1) from None
    if record.state == UNKNOWN:
        raise fail(f"no task {task_id} in the task ledger: not started yet, or no longer "
                   "kept (MESH_TASK_LEDGER_RETENTION)", 1)
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    for line in describe_record(record):
        typer.echo(line)


@tasks_app.command("enqueue")
def enqueue(
    target: Annotated[str, typer.Argument(help="plugin.task, e.g. noop.echo_later")],
    payload: Annotated[str, typer.Argument(help="The task's input as JSON.")] = "{}",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for its result and print it."
                                       )] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.", min=0.1, max=300)
                       ] = 60.0,
    key: Annotated[str | None, typer.Option(
        "--key", help="An idempotency key: queued twice, applied once.")] = None,
) -> None:
    """Queue a task and print its id (`mesh tasks show ID` follows it); with --wait, print
    its result. Through the broker (MESH_BROKER_URL), or the admin API (an embedded mesh)."""
    from pydantic import ValidationError

    from mesh.errors import TaskError, TaskResultTimeout, TaskUnavailable
    from mesh.validation import field_errors

    contract, name = contract_of(target, "task")
    declared = contract.get_task(name)
    if declared is None:
        raise fail(f"plugin {contract.plugin!r} has no task {name!r} "
                   f"(its tasks: {', '.join(sorted(contract.tasks)) or 'none'})")
    try:
        data = json.loads(payload)
        task_input = declared.input.model_validate(data)
    except json.JSONDecodeError as exc:
        raise fail(f"the input is not JSON: {exc}") from None
    except ValidationError as exc:
        problems = "".join(f"\n  {'.'.join(map(str, e['loc'])) or '(input)'}: {e['msg']}"
                           for e in field_errors(exc))
        raise fail(f"the input does not match {declared.input.__name__}:{problems}") from None
    if key is not None and not 0 < len(key) <= 200:
        raise fail("an idempotency key has 1 to 200 characters")
    settings = settings_or_exit()
    body = task_input.model_dump(mode="json")
    if settings.broker_url:
        try:
            task_id, result = asyncio.run(_enqueue_on_bus(
                settings.broker_url, declared, body, key, timeout if wait else None))
        except TaskError as exc:
            raise fail(f"{target} failed: {exc.code}: {exc.message}", 1) from None
        except TaskResultTimeout:
            raise fail(f"{target} has not finished within {timeout:g} s; it still runs", 1
                       ) from None
        except (OSError, TaskUnavailable) as exc:
            raise fail(f"cannot queue {target}: {exc}", 1) from None
    else:
        params: dict[str, object] = {"wait": timeout} if wait else {}
        if key is not None:
            params["idempotency_key"] = key
        response = admin_request(settings, "POST", f"/api/v1/tasks/{declared.plugin}/"
                                 f"{declared.name}", json=body, params=params,
                                 timeout=timeout + 10,
                                 why="no broker configured (MESH_BROKER_URL), and ")
        if response.status_code >= 300:
            raise admin_error(response)
        answer = response.json()
        if wait and response.status_code == 202:  # not finished within the wait
            raise fail(f"{target} has not finished within {timeout:g} s; it still runs "
                       f"({answer['task_id']})", 1)
        task_id, result = answer["task_id"], answer.get("result")
    if not wait:
        typer.echo(f"queued {target} {task_id}")
        return
    typer.echo(json.dumps(result, indent=2))


async def _enqueue_on_bus(url: str, declared: Task[Any, Any], body: dict[str, Any],
                          key: str | None, wait: float | None) -> tuple[str, Any]:
    from mesh.connection import connect

    async with connect(url, caller="cli") as mesh:
        handle = await mesh.enqueuer.enqueue(declared, body, idempotency_key=key,
                                             want_result=wait is not None)
        if wait is None:
            return handle.task_id, None
        result = await handle.result(timeout=wait)
        return handle.task_id, result.model_dump(mode="json")


def describe_record(record: TaskRecord) -> list[str]:
    def when(value: datetime | None) -> str:
        return "-" if value is None else value.astimezone(UTC).strftime(
            "%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"

    lines = [f"task      {record.task} {record.task_id}",
             f"state     {record.state}",
             f"attempts  {record.attempts} of {record.max_attempts}",
             f"queued    {when(record.enqueued_at)} by {record.enqueued_by or '-'}",
             f"started   {when(record.started_at)} on {record.worker or '-'}",
             f"updated   {when(record.updated_at)}"]
    if record.state == "succeeded":
        lines.append(f"result    {record.result}" if record.result_kept else
                     f"result    ({record.result_bytes} bytes: too large to keep)")
    if record.error:
        lines.append(f"error     {record.error.get('code')}: {record.error.get('message')}")
    return lines


async def _record_from_bus(url: str, task_id: str) -> TaskRecord:
    from contracts.platform import PlatformContract
    from mesh.connection import connect
    from mesh.tasks.ledger import TaskStateRequest

    async with connect(url) as mesh:
        return await PlatformContract(mesh.caller).task_state(TaskStateRequest(task_id=task_id))


def _record_from_admin(settings: MeshSettings, task_id: str) -> TaskRecord:
    """No broker configured: ask the server's admin API (an embedded mesh)."""
    from mesh.tasks.ledger import UNKNOWN, TaskRecord

    response = admin_request(settings, "GET", f"/api/v1/tasks/{task_id}", timeout=10,
                             why="no broker configured (MESH_BROKER_URL), and ")
    if response.status_code == 404:
        return TaskRecord(task_id=task_id, state=UNKNOWN)
    if response.status_code != 200:
        raise admin_error(response)
    return TaskRecord.model_validate_json(response.content)
