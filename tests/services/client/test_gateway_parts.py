"""The gateway's parts without a socket: frames read and written, what devices may use (from
the contract catalog), and one connection's subscriptions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mesh.catalog import build_catalog
from mesh.identity import Identity
from mesh.plugin.discovery import discover
from mesh.plugin.plugin_set import PluginSet
from services.client.gateway import DeviceEntries
from services.client.gateway.frames import DeviceError, TopicValues, read
from services.client.gateway.subscriptions import Subscriptions
from tests.conftest import fixture_source


def who(*permissions: str) -> Identity:
    return Identity(user="ada", display_name="Ada", permissions=list(permissions),
                    expires_at=None)


@pytest.mark.parametrize(("text", "code"), [
    ("{not json", "bad_frame"),
    ("[1, 2]", "bad_frame"),
    ('"a string"', "bad_frame"),
    ('{"type": "ping", "id": 1.5}', "bad_frame"),
    ('{"type": "ping", "id": [1]}', "bad_frame"),
    ("x" * 101, "frame_too_large"),
    ('{"text": "' + "é" * 50 + '"}', "frame_too_large"),  # bytes count, not characters
])
def test_bad_frames_are_refused_with_a_code(text: str, code: str) -> None:
    with pytest.raises(DeviceError) as refused:
        read(text, max_bytes=100)
    assert refused.value.code == code


def test_a_frame_is_read_with_its_id_and_type() -> None:
    request = read('{"type": "subscribe", "id": "rows", "topic": "a.b"}', max_bytes=100)
    assert (request.id, request.type, request.frame["topic"]) == ("rows", "subscribe", "a.b")
    assert read('{"type": {"odd": 1}}', max_bytes=100).id is None  # dispatch refuses the type


@pytest.mark.parametrize("sub_id", ["rows", 7, "50%s of it", 'a "quoted" id', "%(x)d"])
def test_topic_values_are_a_snapshot_then_updates_whatever_the_id(sub_id: Any) -> None:
    values = TopicValues(sub_id, "tutorial.string_ints")
    first, second = values.frame(1, '{"items":[]}'), values.frame(2, "null")
    assert json.loads(first) == {"type": "snapshot", "id": sub_id,
                                 "topic": "tutorial.string_ints", "version": 1,
                                 "payload": {"items": []}}
    assert json.loads(second)["type"] == "update" and json.loads(second)["payload"] is None


@pytest.fixture(scope="module")
def entries() -> DeviceEntries:
    plugins = PluginSet([*discover(), fixture_source("devices")])
    return DeviceEntries.from_catalog(build_catalog(plugins))


def test_devices_may_use_topics_actions_and_open_rpcs_only(entries: DeviceEntries) -> None:
    everything = entries.describe(who("*"))
    assert "devices.counter" in everything["topics"]
    assert {"devices.bump", "devices.shout"} <= set(everything["actions"])
    assert "devices.echo" in everything["rpcs"] and "devices.secret" not in everything["rpcs"]
    assert entries.find(who("*"), "action", "devices.bump").qualname == "devices.bump"


def test_a_user_sees_only_what_their_permissions_allow(entries: DeviceEntries) -> None:
    viewer = entries.describe(who("devices/counter/watch"))
    assert "devices.counter" in viewer["topics"]
    assert "devices.bump" not in viewer["actions"]  # needs devices/counter/bump
    assert "devices.shout" in viewer["actions"]  # needs no permission


def test_an_unknown_name_lists_only_the_usable_ones(entries: DeviceEntries) -> None:
    with pytest.raises(DeviceError) as unknown:
        entries.find(who("devices/counter/watch"), "action", "devices.nope")
    assert unknown.value.code == "unknown_action"
    known = unknown.value.message.split("known: ")[1]
    assert "devices.shout" in known and "devices.bump" not in known
    with pytest.raises(DeviceError) as odd:
        entries.find(who("*"), "topic", ["not", "a", "name"])
    assert odd.value.code == "unknown_topic"


def test_disabled_and_refused_contracts_are_left_out() -> None:
    """A contract that cannot be imported, or names a permission its manifest does not
    declare, is never served (without its check); the others are."""
    sources = [*discover(), fixture_source("devices"), fixture_source("undeclared"),
               fixture_source("bad_contract")]
    entries = DeviceEntries.from_catalog(build_catalog(PluginSet(sources, disabled={"devices"})))
    names = [n for kind in entries.describe(who("*")).values() for n in kind]
    assert not [n for n in names if n.split(".")[0] in ("devices", "undeclared",
                                                        "bad_contract")]
    assert "tutorial.string_ints" in entries.topics


def test_subscriptions_reserve_settle_and_end(entries: DeviceEntries) -> None:
    topic = entries.topics["devices.counter"]
    subscriptions = Subscriptions(limit=2)
    ended: list[str] = []
    subscriptions.reserve("a", topic)
    with pytest.raises(DeviceError, match="exists already"):
        subscriptions.reserve("a", topic)
    assert subscriptions.settle("a", lambda: ended.append("a"))
    subscriptions.reserve("b", topic)
    with pytest.raises(DeviceError) as full:
        subscriptions.reserve("c", topic)
    assert full.value.code == "too_many_subscriptions"
    end_b = subscriptions.forget("b")
    assert end_b is not None and "b" not in subscriptions
    assert not subscriptions.settle("b", lambda: None)  # ended while it was being made
    assert subscriptions.end_forbidden(who("devices/counter/watch")) == []
    assert subscriptions.end_forbidden(who()) == [("a", topic)] and ended == ["a"]
    assert len(subscriptions) == 0 and subscriptions.forget("a") is None
