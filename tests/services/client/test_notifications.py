"""Notifications on both buses (docs/devices.md, "Notifications"): a plugin sends one of its
templates, the server stores it, signed-in devices of the people it is for get it live in
their language, the others find it unread when they come back; groups are followed and
unfollowed; and every frame and the sending RPC refuse what they should."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_fixture_devices.contract import Count, DevicesContract, Ping

from contracts.notifications import NotificationsContract, SendNotification
from mesh.errors import PluginError, RpcError
from mesh.notification import Recipients, to_followers, to_roles, to_users
from mesh.plugin.part import PluginContext
from tests.devices import Device, Gateway, of


def ctx(gateway: Gateway, plugin: str = "devices") -> PluginContext:
    record = gateway.server.host.records[plugin]
    assert record.ctx is not None
    return record.ctx


async def answer(device: Device, frame: dict[str, Any]) -> dict[str, Any]:
    reply = await device.answer(frame)
    return reply["result"] if reply["type"] == "result" else {"error": reply["error"]["code"]}


async def test_live_to_the_signed_in_and_unread_for_those_away(gateway: Gateway) -> None:
    here = await gateway.device()
    await here.answer({"type": "catalog", "id": "c", "locale": "de"})  # its language
    sent = await ctx(gateway).send_notification(DevicesContract.counted,
                                                Count(name="hits", value=3), to=to_followers())
    pushed = (await here.expect(of("notification")))["notification"]
    assert pushed["id"] == sent.id and pushed["title"] == "hits ist 3"  # the de catalog
    assert (pushed["group"], pushed["read"], pushed["locale"]) == ("devices.counter", False, "de")
    assert pushed["payload"] == {"name": "hits", "value": 3}

    away = await gateway.device()  # signs in later: nothing pushed, all of it listed
    listed = await answer(away, {"type": "notifications", "id": 1, "locale": "en"})
    assert listed["unread"] == 1 and [n["title"] for n in listed["items"]] == ["hits is 3"]
    assert await answer(away, {"type": "mark_read", "id": 2, "ids": [sent.id]}) == {"unread": 0}
    again = await answer(here, {"type": "notifications", "id": 3})
    assert again["items"][0]["read"] and again["unread"] == 0  # read is per user, not device
    assert not [f for f in away.frames if f["type"] == "notification"]


async def test_an_unfollowed_group_sends_nothing_and_opt_in_groups_need_following(
    gateway: Gateway,
) -> None:
    device = await gateway.device()
    groups = await answer(device, {"type": "groups", "id": 1})
    states = {g["group"]: (g["following"], g["default"]) for g in groups["groups"]}
    assert states.items() >= {"devices.counter": (True, True),
                              "devices.pings": (False, False)}.items()
    assert await answer(device, {"type": "follow", "id": 2, "group": "devices.counter",
                                 "following": False}) == {
        "group": "devices.counter", "following": False, "default": True}
    sender = ctx(gateway)
    await sender.send_notification(DevicesContract.counted, Count(name="a", value=1),
                                   to=to_followers())
    await sender.send_notification(DevicesContract.counted, Count(name="b", value=2),
                                   to=to_users("admin"))  # unfollowed: not even by name
    await sender.send_notification(DevicesContract.pinged, Ping(n=1), to=to_followers())
    await answer(device, {"type": "follow", "id": 3, "group": "devices.pings",
                          "following": True})
    await sender.send_notification(DevicesContract.pinged, Ping(n=2), to=to_followers())
    pushed = await device.expect(of("notification"))  # control messages keep their order
    assert pushed["notification"]["title"] == "ping 2"
    listed = await answer(device, {"type": "notifications", "id": 4})
    assert [n["title"] for n in listed["items"]] == ["ping 2"] and listed["unread"] == 1


async def test_roles_and_users_address_people_and_permission_hides(gateway: Gateway) -> None:
    device = await gateway.device()
    sender = ctx(gateway)
    await sender.send_notification(DevicesContract.pinged, Ping(n=1), to=to_roles("nobody"))
    await sender.send_notification(DevicesContract.pinged, Ping(n=2), to=to_users("someone"))
    admin_roles = (await gateway.clients[0].auth.identity(device.token or "")).roles
    await sender.send_notification(DevicesContract.pinged, Ping(n=3), to=to_roles(*admin_roles))
    await sender.send_notification(DevicesContract.pinged, Ping(n=4),
                                   to=Recipients(users=["admin"], roles=["nobody"]))
    listed = await answer(device, {"type": "notifications", "id": 1})
    assert [n["title"] for n in listed["items"]] == ["ping 4", "ping 3"]
    assert await answer(device, {"type": "mark_read", "id": 2, "all": True}) == {"unread": 0}
    store = gateway.server.notifications.store
    viewer = (await gateway.clients[0].auth.identity(device.token or "")).model_copy(
        update={"permissions": ["devices/counter/bump"], "roles": []})
    await sender.send_notification(DevicesContract.counted, Count(name="x", value=1),
                                   to=to_users("admin"))
    seen = await store.listing(viewer, before=None, limit=10, unread_only=True)
    assert seen.items == [] and seen.unread == 0  # counted needs devices/counter/watch
    assert await store.mark_read(viewer, [], True) == 0
    assert (await answer(device, {"type": "notifications", "id": 3}))["unread"] == 1


BAD_FRAMES = [
    ({"type": "notifications", "limit": 0}, "invalid_request"),
    ({"type": "notifications", "limit": "ten"}, "invalid_request"),
    ({"type": "notifications", "before": -1}, "invalid_request"),
    ({"type": "notifications", "unread_only": "maybe"}, "invalid_request"),
    ({"type": "mark_read"}, "invalid_request"),
    ({"type": "mark_read", "ids": "1,2"}, "invalid_request"),
    ({"type": "mark_read", "ids": list(range(1001))}, "frame_too_large"),
    ({"type": "follow", "group": "devices.counter"}, "invalid_request"),
    ({"type": "follow", "group": "../etc", "following": True}, "invalid_request"),
    ({"type": "follow", "group": "devices.nothing", "following": True}, "mesh.unknown_group"),
    ({"type": "follow", "group": {"$ne": 1}, "following": True}, "invalid_request"),
    ({"type": "personal_settings", "plugin": "tutorial_stats"}, "mesh.no_personal_settings"),
    ({"type": "personal_settings", "plugin": "../x"}, "invalid_request"),
    ({"type": "change_personal_settings", "plugin": "devices", "values": {"volume": 11}},
     "mesh.invalid_settings"),
    ({"type": "change_personal_settings", "plugin": "devices", "values": {"admin": True}},
     "mesh.invalid_settings"),
    ({"type": "change_personal_settings", "plugin": "devices", "values": []},
     "invalid_request"),
]


async def test_bad_frames_are_refused_and_the_connection_stays(gateway: Gateway) -> None:
    device = await gateway.device()
    for number, (frame, code) in enumerate(BAD_FRAMES):
        if code == "frame_too_large":  # past the gateway's frame limit: refused unread
            await device.send({**frame, "id": number})
            reply = await device.expect(lambda f: f["type"] == "error" and f["id"] is None)
        else:
            reply = await device.answer({**frame, "id": number})
        assert reply["type"] == "error" and reply["error"]["code"] == code, (frame, reply)
    assert (await device.answer({"type": "ping", "id": "p"}))["type"] == "pong"
    listed = await answer(device, {"type": "groups", "id": "g"})
    assert dict.fromkeys(["devices.counter"], True).items() <= {
        g["group"]: g["default"] for g in listed["groups"]}.items()  # nothing changed


async def test_devices_not_signed_in_get_nothing(gateway: Gateway) -> None:
    anonymous = await gateway.device(user=None)
    for kind in ("notifications", "mark_read", "follow", "groups", "personal_settings",
                 "change_personal_settings"):
        reply = await anonymous.answer({"type": kind, "id": kind, "all": True})
        assert reply["error"]["code"] == "unauthenticated", reply
    signed_in = await gateway.device()
    await ctx(gateway).send_notification(DevicesContract.counted, Count(name="a", value=1),
                                         to=to_followers())
    await signed_in.expect(of("notification"))
    assert not [f for f in anonymous.frames if f["type"] == "notification"]


async def test_sending_refuses_what_is_not_a_declared_template_and_payload(
    gateway: Gateway,
) -> None:
    sender = ctx(gateway)
    with pytest.raises(PluginError, match="cannot send tutorial.int1_high"):
        from mesh_tutorial.contract import Int1Crossed, TutorialContract

        await sender.send_notification(TutorialContract.int1_high, Int1Crossed(
            id=1, string1="x", int1=1, threshold=1), to=to_followers())
    with pytest.raises(TypeError, match="payload is a Count"):
        await sender.send_notification(DevicesContract.counted, Ping(n=1),  # type: ignore[arg-type]
                                       to=to_followers())
    stub = NotificationsContract(gateway.server.rpc_caller)

    async def code(template: str, payload: dict[str, Any]) -> str:
        with pytest.raises(RpcError) as caught:
            await stub.send_notification(SendNotification(
                template=template, payload=payload, to=to_followers(), sent_by="test"))
        return caught.value.code

    assert await code("devices.nothing", {}) == "mesh.unknown_template"
    assert await code("devices.counted", {"name": "x"}) == "mesh.invalid_payload"
    assert await code("devices.counted", {"name": "x", "value": "many"}) == "mesh.invalid_payload"
    with pytest.raises(ValueError, match="users, roles or the group's followers"):
        Recipients()
    with pytest.raises(ValueError, match="1 to 200 characters"):
        to_users("")
    with pytest.raises(ValueError):
        SendNotification(template="not a name", payload={}, to=to_followers(), sent_by="x")


async def test_personal_settings_are_validated_and_pushed_to_the_other_sessions(
    gateway: Gateway,
) -> None:
    phone, laptop = await gateway.device(), await gateway.device()
    assert await answer(phone, {"type": "personal_settings", "id": 1, "plugin": "devices"}) == {
        "user": "admin", "plugin": "devices", "values": {"volume": 5, "theme": "light"}}
    changed = await answer(phone, {"type": "change_personal_settings", "id": 2,
                                   "plugin": "devices", "values": {"volume": 9}})
    assert changed["values"] == {"volume": 9, "theme": "light"}
    pushed = await laptop.expect(of("personal_settings"))
    assert (pushed["plugin"], pushed["values"]) == ("devices", {"volume": 9, "theme": "light"})
    await answer(phone, {"type": "change_personal_settings", "id": 3, "plugin": "devices",
                         "values": {"theme": "dark"}})  # the earlier choice is kept
    settings = await ctx(gateway).personal_settings("admin")
    assert (settings.volume, settings.theme) == (9, "dark")
    assert (await ctx(gateway).personal_settings("someone else")).volume == 5  # the default
    with pytest.raises(PluginError, match="declares no personal settings"):
        await ctx(gateway, "tutorial_stats").personal_settings("admin")


def doc_blocks(heading: str) -> list[list[dict[str, Any]]]:
    """The JSON frame blocks under a heading of docs/devices.md, up to the next heading."""
    import json
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "devices.md").read_text()
    section = text.split(heading + "\n", 1)[1].split("\n### ", 1)[0]
    return [[json.loads(line) for line in block.split("```", 1)[0].splitlines() if line.strip()]
            for block in section.split("```json\n")[1:]]


async def test_the_documented_frames_are_understood(gateway: Gateway) -> None:
    device = await gateway.device()
    pushed, requests = doc_blocks("### Notifications")
    personal, personal_pushed = doc_blocks("### Personal settings")
    for frame in [*requests, *personal]:
        reply = await device.answer(frame)
        assert reply["type"] == "result", (frame, reply)
    assert [f["type"] for f in pushed + personal_pushed] == ["notification", "personal_settings"]
    await ctx(gateway).send_notification(DevicesContract.pinged, Ping(n=1), to=to_users("admin"))
    real = await device.expect(of("notification"))
    assert set(real) == set(pushed[0]) and set(real["notification"]) == set(
        pushed[0]["notification"])
    other = await gateway.device()
    await device.answer({**personal[-1], "id": "again"})
    assert set(await other.expect(of("personal_settings"))) == set(personal_pushed[0])


async def test_a_template_permission_decides_who_is_shown_it_live(gateway: Gateway) -> None:
    from tests.services.client.test_auth import VIEWER_PASSWORD, add_user

    await add_user(gateway, "watcher", ["devices/counter/watch"])
    await add_user(gateway, "bumper", ["devices/counter/bump"])
    watcher = await gateway.device(user="watcher", password=VIEWER_PASSWORD)
    bumper = await gateway.device(user="bumper", password=VIEWER_PASSWORD)
    sender = ctx(gateway)
    await sender.send_notification(DevicesContract.counted, Count(name="c", value=1),
                                   to=to_followers())
    await sender.send_notification(DevicesContract.pinged, Ping(n=1),
                                   to=to_users("watcher", "bumper"))
    assert (await watcher.expect(of("notification")))["notification"]["title"] == "c is 1"
    assert (await bumper.expect(of("notification")))["notification"]["title"] == "ping 1"
    assert (await watcher.expect(of("notification")))["notification"]["title"] == "ping 1"
    assert [f["notification"]["title"] for f in bumper.frames if f["type"] == "notification"] \
        == ["ping 1"]  # counted needs devices/counter/watch: never pushed, never listed
    listed = await answer(bumper, {"type": "notifications", "id": 1})
    assert [n["title"] for n in listed["items"]] == ["ping 1"]
    groups = await answer(bumper, {"type": "groups", "id": 2})
    assert "devices.counter" not in {g["group"] for g in groups["groups"]}
    refused = await answer(bumper, {"type": "follow", "id": 3, "group": "devices.counter",
                                    "following": True})
    assert refused == {"error": "mesh.unknown_group"}


async def test_notifications_past_the_retention_are_purged(gateway: Gateway) -> None:
    from sqlalchemy import func, select, update

    from mesh.platform.models import (
        SCHEMA,
        NotificationReadRow,
        NotificationRecipientRow,
        NotificationRow,
    )

    device = await gateway.device()
    sender, store = ctx(gateway), gateway.server.notifications.store
    old = await sender.send_notification(DevicesContract.pinged, Ping(n=1), to=to_users("admin"))
    await sender.send_notification(DevicesContract.pinged, Ping(n=2), to=to_users("admin"))
    await answer(device, {"type": "mark_read", "id": 1, "all": True})
    database = gateway.server.database
    assert database is not None
    async with database.session(SCHEMA) as session:
        await session.execute(update(NotificationRow).where(NotificationRow.id == old.id)
                              .values(sent_ms=old.sent_ms - int(store.retention * 1000) - 1))
        await session.commit()
    assert await store.purge() == 1
    async with database.session(SCHEMA) as session:
        for table in (NotificationRecipientRow, NotificationReadRow):
            left = await session.scalar(select(func.count()).select_from(table).where(
                table.notification_id == old.id))
            assert left == 0, table
    listed = await answer(device, {"type": "notifications", "id": 2})
    assert [n["title"] for n in listed["items"]] == ["ping 2"]


async def test_a_service_sends_only_the_templates_of_plugins_on_its_kind(
    gateway: Gateway, bus: Any,
) -> None:
    """The sender's plugin comes from what the bus vouches for (the calling kind), not from
    the request: an agent or a client calling `mesh.send_notification` itself cannot send
    the devices plugin's notification, which runs on the server alone; `sent_by` is the
    kind's own, whatever the request wrote."""
    from mesh.rpc.caller import RpcCaller

    request = SendNotification(template="devices.counted", payload={"name": "x", "value": 1},
                               to=to_followers(), sent_by="server/devices")
    for kind in ("agent", "client", "worker"):
        caller = RpcCaller(await bus.connected(f"{kind}-forger"), kind)
        await caller.start()
        with pytest.raises(RpcError, match=f"the {kind} may not send devices.counted") as no:
            await NotificationsContract(caller).send_notification(request)
        assert no.value.code == "not_allowed"
    here = await gateway.device()
    sent = await NotificationsContract(gateway.server.rpc_caller).send_notification(
        request.model_copy(update={"sent_by": "agent/tutorial"}))
    pushed = (await here.expect(of("notification")))["notification"]
    assert pushed["id"] == sent.id  # only the server's own went out
    from mesh.platform.models import NotificationRow
    from mesh.platform.notifications import SCHEMA

    async with gateway.server.database.session(SCHEMA) as session:
        row = await session.get(NotificationRow, sent.id)
    assert row is not None and row.sent_by == "server/devices"  # not the request's word
