"""The per-kind broker users, applied in one step: the users and their permissions (mesh
broker_acl) as one RabbitMQ definitions document, imported through the management API
(`POST /api/definitions`, what compose's `broker-users` step does) or `rabbitmqctl
import_definitions` on the broker's host. An import adds and updates; it removes nothing.

`mesh up` derives each user's password from its own broker credentials (an HMAC of the
user's name), so every start, and several `mesh up`s sharing the credentials, agree on the
passwords without storing them; whoever holds the admin URL could set them anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
from typing import Any
from urllib.parse import unquote, urlsplit

from mesh.broker_acl import KindAcl
from mesh.broker_urls import split_broker_urls, with_user

HASHING = "rabbit_password_hashing_sha256"  # RabbitMQ's default since 3.6


class BrokerUsersError(Exception):
    """The users could not be applied: the message says why and what to do."""


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's stored form of a password: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def derived_password(secret: str, user: str) -> str:
    """A broker user's password, derived from the credentials that make it."""
    digest = hmac.new(secret.encode(), f"mesh-broker-user:{user}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:24]).decode()


def definitions(acls: list[KindAcl], vhost: str, exchange: str,
                passwords: dict[str, str]) -> dict[str, Any]:
    """The definitions document that makes (or updates) each user of `passwords` with its
    password, and sets every user's permissions in `vhost` and topic permissions on
    `exchange` (a user left out of `passwords` must exist: its password stays)."""
    return {
        "users": [{"name": a.user, "password_hash": password_hash(passwords[a.user]),
                   "hashing_algorithm": HASHING, "tags": ""}
                  for a in acls if a.user in passwords],
        "permissions": [{"user": a.user, "vhost": vhost, "configure": a.configure,
                         "write": a.write, "read": a.read} for a in acls],
        "topic_permissions": [{"user": a.user, "vhost": vhost, "exchange": exchange,
                               "write": a.topic_write, "read": a.topic_read} for a in acls],
    }


def management_url_for(broker_url: str) -> str:
    """The management API beside the first node of MESH_BROKER_URL (http, port 15672)."""
    host = urlsplit(split_broker_urls(broker_url)[0]).hostname or "127.0.0.1"
    return f"http://{host}:15672"


def _management(admin_url: str, management_url: str, method: str, path: str,
                body: str | None = None) -> Any:
    import httpx

    parts = urlsplit(split_broker_urls(admin_url)[0])
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    try:
        answer = httpx.request(method, f"{management_url.rstrip('/')}/api/{path}",
                               content=body, auth=auth, timeout=30,
                               headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        raise BrokerUsersError(f"cannot reach the management API at {management_url}: "
                               f"{exc}") from None
    if answer.status_code >= 300:
        raise BrokerUsersError(f"the management API at {management_url} answered "
                               f"{answer.status_code} to {method} /api/{path}: "
                               f"{answer.text[:300]}")
    return answer.json() if answer.content else None


def _rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(["rabbitmqctl", *args], input=stdin, capture_output=True,
                              text=True, timeout=60)
    except FileNotFoundError:
        raise BrokerUsersError(
            "rabbitmqctl is not installed here: set MESH_BROKER_MANAGEMENT_URL to the "
            "broker's management API") from None
    if done.returncode != 0:
        raise BrokerUsersError(f"rabbitmqctl {args[0]} failed: "
                               f"{(done.stderr or done.stdout).strip()}")
    return done.stdout


def listed(what: str, *, admin_url: str, management_url: str | None) -> set[str]:
    """The broker's "users" or "vhosts", by name."""
    if management_url is None:
        rows = json.loads(_rabbitmqctl(f"list_{what}", "-q", "--formatter", "json") or "[]")
    else:
        rows = _management(admin_url, management_url, "GET", what)
    return {row.get("user", row.get("name")) for row in rows}


def import_definitions(document: dict[str, Any], *, admin_url: str,
                       management_url: str | None) -> str:
    """Import `document` through the management API at `management_url` (as the admin URL's
    user) or, when it is None, through the local rabbitmqctl; how it was done."""
    body = json.dumps(document)
    if management_url is None:
        _rabbitmqctl("import_definitions", "--format", "json", stdin=body)
        return "rabbitmqctl"
    _management(admin_url, management_url, "POST", "definitions", body)
    return management_url


def kind_urls(admin_url: str, acls: list[KindAcl], vhost: str,
              passwords: dict[str, str]) -> dict[str, str]:
    """Each kind's MESH_BROKER_URL: the admin URL's nodes, as the kind's own user."""
    return {a.kind: with_user(admin_url, a.user, passwords[a.user], vhost) for a in acls}
