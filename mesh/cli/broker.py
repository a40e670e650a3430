"""`mesh broker acl`: one RabbitMQ user per service kind, its permissions derived from the
contracts; printed as rabbitmqctl commands, or applied with `--apply`."""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from typing import TYPE_CHECKING, Annotated

import typer

from mesh.cli.errors import command_group, fail, settings_or_exit

if TYPE_CHECKING:
    from mesh.broker_acl import KindAcl

broker_app = command_group("RabbitMQ users and permissions for the services.")


def rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(["rabbitmqctl", *args], input=stdin, capture_output=True,
                              text=True, timeout=60)
    except FileNotFoundError:
        raise fail("rabbitmqctl is not installed here: run `mesh broker acl` without "
                   "--apply and run its commands on the broker's host", 1) from None
    if done.returncode != 0:
        raise fail(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()}", 1)
    return done.stdout


def listed(what: str) -> set[str]:
    """The names rabbitmqctl lists: users are under "user", vhosts under "name"."""
    rows = json.loads(rabbitmqctl(what, "-q", "--formatter", "json") or "[]")
    return {row.get("user", row.get("name")) for row in rows}


@broker_app.command("acl")
def acl(
    vhost: Annotated[str | None, typer.Option(
        help="The virtual host; default: the one in MESH_BROKER_URL, else '/'.")] = None,
    prefix: Annotated[str, typer.Option(
        help="Users are named <prefix>-<kind>.")] = "mesh",
    apply: Annotated[bool, typer.Option(
        "--apply", help="Create the users that are missing (with generated passwords, "
        "printed once) and set every user's permissions, through rabbitmqctl.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The permissions as JSON.")] = False,
) -> None:
    """Each service kind's broker user: what it may configure, write and read in the vhost,
    and which routing keys it may publish and bind on the mesh exchange."""
    from mesh.broker_acl import broker_acl
    from mesh.broker_urls import vhost_of, with_user
    from mesh.catalog import build_catalog
    from mesh.plugin.plugin_set import PluginSet

    settings = settings_or_exit()
    host = vhost or (vhost_of(settings.broker_url) if settings.broker_url else "/")
    catalog = build_catalog(PluginSet.installed(disabled=settings.disabled_plugins))
    acls = broker_acl(catalog, exchange=settings.exchange, prefix=prefix)
    if as_json and not apply:
        typer.echo(json.dumps({"vhost": host, "exchange": settings.exchange,
                               "users": [vars(a) for a in acls]}, indent=2))
        return
    if not apply:
        typer.echo(script(acls, host, settings.exchange))
        return
    if host not in listed("list_vhosts"):
        raise fail(f"the vhost {host!r} does not exist: create it first "
                   f"(rabbitmqctl add_vhost {shlex.quote(host)})", 1)
    users = listed("list_users")
    created: dict[str, str] = {}
    for entry in acls:
        if entry.user not in users:
            password = secrets.token_urlsafe(24)
            rabbitmqctl("add_user", entry.user, stdin=password + "\n")
            created[entry.kind] = with_user(settings.broker_url or "", entry.user, password,
                                            host)
        for command in entry.rabbitmqctl(host, settings.exchange):
            rabbitmqctl(*command)
    if as_json:
        typer.echo(json.dumps({"vhost": host, "created": created}, indent=2))
        return
    for entry in acls:
        typer.echo(f"{entry.kind}: {entry.user} set" + (
            f"; MESH_BROKER_URL={created[entry.kind]}" if entry.kind in created
            else " (it existed: its password is unchanged)"))
    if created:
        typer.echo("The passwords are shown only now: give each service its own URL.")


def script(acls: list[KindAcl], vhost: str, exchange: str) -> str:
    lines = [f"# mesh broker users for vhost {vhost!r}, exchange {exchange!r}: run on the "
             "broker's host (or use --apply).",
             "# Create each user once: rabbitmqctl add_user <user> (it reads the password).",
             "# Run again after installing or upgrading plugins: their contracts change this."]
    for entry in acls:
        lines.append(f"\n# {entry.kind}: may publish {', '.join(entry.publishes)}")
        lines += ["rabbitmqctl " + shlex.join(c) for c in entry.rabbitmqctl(vhost, exchange)]
    return "\n".join(lines)
