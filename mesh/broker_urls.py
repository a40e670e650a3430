"""Broker URLs: MESH_BROKER_URL names one RabbitMQ node, or the nodes of one cluster.

A comma-separated list is the nodes of one cluster: one vhost, each URL complete (credentials
percent-encoded, so a comma never appears inside one). A service connects to one of them and
fails over to the others when it loses that node.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

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


def failover_order(urls: Sequence[str], rng: random.Random | None = None) -> list[str]:
    """The order a service tries the nodes in: shuffled, so services spread over a cluster."""
    order = list(urls)
    (rng or random).shuffle(order)
    return order
