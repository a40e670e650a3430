"""Broker URLs: MESH_BROKER_URL names one RabbitMQ node, or the nodes of one cluster.

A comma-separated list is the nodes of one cluster: one vhost, each URL complete (credentials
percent-encoded, so a comma never appears inside one). A service connects to one of them and
fails over to the others when it loses that node.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlsplit

SCHEMES = ("amqp", "amqps")


def vhost_of(url: str) -> str:
    """The vhost a URL names, as aio-pika reads it: the path without its slash, else `/`."""
    return unquote(urlsplit(url).path[1:]) or "/"


def split_broker_urls(value: str) -> tuple[str, ...]:
    """The URLs in `value`, in order; ValueError saying which entry is wrong and why."""
    urls = tuple(part.strip() for part in value.split(","))
    for index, url in enumerate(urls, 1):
        where = f"broker URL {index} of {len(urls)}"
        if not url:
            raise ValueError(f"{where} is empty (a stray comma?)")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"{where} is not a URL: {exc}") from None
        if parts.scheme not in SCHEMES:
            raise ValueError(f"{where} must start with amqp:// or amqps://, not "
                             f"{parts.scheme + '://' if parts.scheme else repr(url[:8])}")
        if not parts.hostname:
            raise ValueError(f"{where} names no host")
    vhosts = {vhost_of(url) for url in urls}
    if len(vhosts) > 1:
        raise ValueError("the broker URLs name different vhosts "
                         f"({', '.join(sorted(vhosts))}): list the nodes of one cluster, one vhost")
    return urls


def redacted(value: str) -> str:
    """MESH_BROKER_URL for banners and logs: each URL without its password."""
    return ",".join(_redacted(url.strip()) for url in value.split(","))


def _redacted(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def with_user(value: str, user: str, password: str, vhost: str) -> str:
    """MESH_BROKER_URL's nodes (or one local node if it is empty), as `user` with `password`
    in `vhost`: what a service's own broker user puts in its MESH_BROKER_URL."""
    urls = split_broker_urls(value) if value else ("amqp://127.0.0.1/",)
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    path = quote(vhost, safe="")
    made = []
    for url in urls:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        query = f"?{parts.query}" if parts.query else ""  # amqps options: cafile, ...
        made.append(f"{parts.scheme}://{credentials}@{parts.hostname}{port}/{path}{query}")
    return ",".join(made)


def failover_order(urls: Sequence[str], rng: random.Random | None = None) -> list[str]:
    """The order a service tries the nodes in: shuffled, so services spread over a cluster."""
    order = list(urls)
    (rng or random).shuffle(order)
    return order
