"""MESH_BROKER_URL as a list of a cluster's nodes: parsing, validation and the node chosen."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from mesh.broker_urls import failover_order, redacted, split_broker_urls, vhost_of, with_user
from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from tests.conftest import delete_exchange

NODES = "amqp://u:p@n1:5701/prod,amqp://u:p@n2:5702/prod , amqps://u:p%2Cq@n3/prod"


def test_one_url_is_a_list_of_one() -> None:
    assert split_broker_urls("amqp://guest:guest@127.0.0.1/") == ("amqp://guest:guest@127.0.0.1/",)


def test_a_list_keeps_its_order_and_drops_spaces() -> None:
    assert split_broker_urls(NODES) == ("amqp://u:p@n1:5701/prod", "amqp://u:p@n2:5702/prod",
                                        "amqps://u:p%2Cq@n3/prod")


def test_the_default_vhost_is_spelt_either_way() -> None:
    assert vhost_of("amqp://a") == vhost_of("amqp://b/") == vhost_of("amqp://c/%2F") == "/"
    assert split_broker_urls("amqp://a,amqp://b/")


@pytest.mark.parametrize(("value", "error"), [
    ("amqp://a/,,amqp://b/", "broker URL 2 of 3 is empty"),
    ("amqp://a/,", "broker URL 2 of 2 is empty"),
    ("amqp://a/,http://b/", "broker URL 2 of 2 must start with amqp:// or amqps://, not http://"),
    ("rabbit:5672", "broker URL 1 of 1 must start with amqp://"),
    ("amqp:///vhost", "broker URL 1 of 1 names no host"),
    ("amqp://a:port/", "broker URL 1 of 1 is not a URL"),
    ("amqp://a/prod,amqp://b/test", "different vhosts (prod, test)"),
    ("amqp://a/,amqp://b/prod", "different vhosts (/, prod)"),
])
def test_a_bad_list_is_refused_saying_why(value: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        split_broker_urls(value)
    assert error in str(caught.value)
    with pytest.raises(ValidationError) as invalid:
        MeshSettings(broker_url=value)
    assert error in str(invalid.value)


def test_settings_keep_a_good_list_as_given() -> None:
    assert MeshSettings(broker_url=NODES).broker_url == NODES
    assert MeshSettings(broker_url="").broker_url == ""  # empty: the embedded bus, as before


def test_banners_show_every_node_and_no_password() -> None:
    assert redacted(NODES) == ("amqp://u:***@n1:5701/prod,amqp://u:***@n2:5702/prod,"
                               "amqps://u:***@n3/prod")
    assert redacted("amqp://127.0.0.1/") == "amqp://127.0.0.1/"
    assert "p@ss" not in redacted("amqp://u:p@ss@n1/")  # an unencoded @ in the password


def test_a_service_user_gets_a_url_for_every_node() -> None:
    """`mesh broker acl --apply` prints each new user's MESH_BROKER_URL: the same nodes."""
    made = with_user(NODES, "mesh-agent", "s3cret,/@", "prod")
    assert split_broker_urls(made) == (
        "amqp://mesh-agent:s3cret%2C%2F%40@n1:5701/prod",
        "amqp://mesh-agent:s3cret%2C%2F%40@n2:5702/prod",
        "amqps://mesh-agent:s3cret%2C%2F%40@n3/prod")
    assert with_user("", "u", "p", "/") == "amqp://u:p@127.0.0.1/%2F"


def test_failover_order_is_a_shuffle_of_every_node() -> None:
    urls = [f"amqp://n{i}/" for i in range(6)]
    orders = {tuple(failover_order(urls, random.Random(seed))) for seed in range(20)}
    assert all(sorted(order) == urls for order in orders)
    assert len(orders) > 1  # services spread over the nodes


def test_a_transport_tries_every_node_in_its_order() -> None:
    transport = RabbitTransport("amqp://a/,amqp://b/,amqp://c/", "mesh")
    assert sorted(transport.urls) == ["amqp://a/", "amqp://b/", "amqp://c/"]
    with pytest.raises(ValueError, match="broker URL 2 of 2 is empty"):
        RabbitTransport("amqp://a/,", "mesh")


@pytest.mark.rabbitmq
async def test_a_transport_connects_to_the_node_that_answers(mesh_broker_url: str) -> None:
    dead = "amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/"
    exchange = f"urls-{random.randrange(10**9)}"
    transport = RabbitTransport(f"{dead},{mesh_broker_url}", exchange, connect_timeout=5)
    await transport.connect()
    try:
        assert transport.broker == mesh_broker_url
        assert transport.connected
    finally:
        await transport.close()
        await delete_exchange(mesh_broker_url, exchange)


@pytest.mark.rabbitmq
async def test_no_node_answering_raises_the_last_error() -> None:
    transport = RabbitTransport("amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/",
                                "mesh", connect_timeout=2)
    with pytest.raises(ConnectionError):
        await transport.connect()


def test_the_asyncapi_server_is_one_node_of_the_cluster() -> None:
    from mesh.asyncapi import build_asyncapi
    from mesh.catalog import build_catalog
    from mesh.plugin.discovery import discover
    from mesh.plugin.plugin_set import PluginSet

    catalog = build_catalog(PluginSet([s for s in discover() if s.name == "noop"]))
    server = build_asyncapi(catalog, broker_url=NODES)["servers"]["rabbitmq"]
    assert (server["host"], server["pathname"]) == ("n1:5701", "/prod")
    assert "One of 3 nodes of a cluster" in server["description"]
    assert "p%2Cq" not in str(server)
