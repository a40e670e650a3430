"""`mesh call plugin.rpc '{json}'`: join the bus as a short-lived caller and print the reply."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mesh.cli.admin import admin_request, error_body
from mesh.cli.errors import fail, settings_or_exit
from mesh.cli.lookup import contract_of

if TYPE_CHECKING:
    from mesh.config import MeshSettings
    from mesh.contract import Rpc


def find_rpc(target: str) -> Rpc[Any, Any]:
    contract, name = contract_of(target, "rpc")
    rpc = contract.get_rpc(name)
    if rpc is None:
        raise fail(f"plugin {contract.plugin!r} has no RPC {name!r} "
                   f"(its RPCs: {', '.join(sorted(contract.rpcs)) or 'none'})")
    return rpc


def call_command(
    target: Annotated[str, typer.Argument(help="plugin.rpc, e.g. noop.echo")],
    payload: Annotated[str, typer.Argument(help="The request as JSON.")] = "{}",
    timeout: Annotated[
        float | None, typer.Option(help="Seconds (default: the contract's).")
    ] = None,
) -> None:
    """Call an RPC and print its typed reply as JSON."""
    from pydantic import ValidationError

    from mesh.errors import RpcError
    from mesh.validation import field_errors

    rpc = find_rpc(target)
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise fail(f"the payload is not JSON: {exc}") from None
    try:
        request = rpc.request.model_validate(data)
    except ValidationError as exc:
        typer.echo(f"error: the request does not match {rpc.request.__name__}:", err=True)
        for err in field_errors(exc):
            typer.echo(f"  {'.'.join(map(str, err['loc'])) or '(body)'}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    settings = settings_or_exit()
    try:
        if settings.broker_url:
            reply = asyncio.run(_call(settings.broker_url, rpc, request, timeout))
        else:
            reply = _call_through_admin(settings, rpc, request, timeout)
    except RpcError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        if exc.details:
            typer.echo(json.dumps(exc.details, indent=2), err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        raise fail(f"cannot reach the broker: {exc}", 1) from None
    typer.echo(reply)


def _call_through_admin(settings: MeshSettings, rpc: Rpc[Any, Any], request: Any,
                        timeout: float | None) -> str:
    """No broker configured: ask the server's admin API to make the call (embedded mesh)."""
    from mesh.errors import RpcError

    wait = (timeout or rpc.timeout) + 5
    response = admin_request(settings, "POST", f"/api/v1/rpc/{rpc.plugin}/{rpc.name}",
                             json=request.model_dump(mode="json"), timeout=wait,
                             why="no broker configured (MESH_BROKER_URL), and ")
    if response.status_code == 200:
        return json.dumps(response.json(), indent=2)
    body = error_body(response)
    raise RpcError(str(body.get("message", response.text)), code=body.get("code", "error"),
                   details=body.get("details"))


async def _call(url: str, rpc: Rpc[Any, Any], request: Any, timeout: float | None) -> str:
    from mesh.connection import connect

    async with connect(url) as mesh:
        reply = await mesh.rpc.call(rpc, request, timeout=timeout)
        return reply.model_dump_json(indent=2)
