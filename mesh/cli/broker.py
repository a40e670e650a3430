"""`mesh broker acl`: one RabbitMQ user per service kind, its permissions derived from the
contracts; printed as rabbitmqctl commands, or applied with `--apply`."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from mesh.cli.errors import command_group, fail, settings_or_exit

if TYPE_CHECKING:
    from mesh.broker_acl import KindAcl

broker_app = command_group("RabbitMQ users and permissions for the services.")


@broker_app.command("acl")
def acl(
    vhost: Annotated[str | None, typer.Option(
        help="The virtual host; default: the one in MESH_BROKER_URL, else '/'.")] = None,
    prefix: Annotated[str, typer.Option(
        help="Users are named <prefix>-<kind>.")] = "mesh",
    apply: Annotated[bool, typer.Option(
        "--apply", help="Create the users that are missing (with generated passwords, "
        "printed once, or MESH_BROKER_PASSWORD_<KIND> when set, which also changes an "
        "existing user's) and set every user's permissions, in one definitions import "
        "through MESH_BROKER_MANAGEMENT_URL or the local rabbitmqctl.")] = False,
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
    from mesh.broker_users import (
        BrokerUsersError,
        definitions,
        import_definitions,
        listed,
        management_url_for,
    )

    admin = settings.broker_url or ""
    management = settings.broker_management_url or (
        None if shutil.which("rabbitmqctl") or not admin else management_url_for(admin))
    try:
        if host not in listed("vhosts", admin_url=admin, management_url=management):
            raise fail(f"the vhost {host!r} does not exist: create it first "
                       f"(rabbitmqctl add_vhost {shlex.quote(host)})", 1)
        users = listed("users", admin_url=admin, management_url=management)
        passwords: dict[str, str] = {}
        created: dict[str, str] = {}
        for entry in acls:
            given = os.environ.get(f"MESH_BROKER_PASSWORD_{entry.kind.upper()}")
            if given:
                passwords[entry.user] = given
            elif entry.user not in users:
                passwords[entry.user] = secrets.token_urlsafe(24)
                created[entry.kind] = with_user(admin, entry.user, passwords[entry.user], host)
        import_definitions(definitions(acls, host, settings.exchange, passwords),
                           admin_url=admin, management_url=management)
    except BrokerUsersError as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps({"vhost": host, "created": created}, indent=2))
        return
    for entry in acls:
        typer.echo(f"{entry.kind}: {entry.user} set" + (
            f"; MESH_BROKER_URL={created[entry.kind]}" if entry.kind in created
            else " (its password from MESH_BROKER_PASSWORD_" + entry.kind.upper() + ")"
            if entry.user in passwords else " (it existed: its password is unchanged)"))
    if created:
        typer.echo("The passwords are shown only now: give each service its own URL.")


def script(acls: list[KindAcl], vhost: str, exchange: str) -> str:
    lines = [f"# mesh broker users for vhost {vhost!r}, exchange {exchange!r}: run on the "
             "broker's host (or use --apply).",
             "# Create each user once: rabbitmqctl add_user <user> (it reads the password).",
             "# Installing or removing a plugin needs no change; run again after an upgrade "
             "that opens an RPC to more kinds."]
    for entry in acls:
        lines.append(f"\n# {entry.kind}: may publish {', '.join(entry.publishes)}")
        lines += ["rabbitmqctl " + shlex.join(c) for c in entry.rabbitmqctl(vhost, exchange)]
    return "\n".join(lines)
