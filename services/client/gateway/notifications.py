"""Notifications and personal settings for devices (docs/devices.md, "Notifications" and
"Personal settings"): the frames a signed-in device lists, marks read and follows with, and the
frames it is pushed when a notification for its user is stored or its user's personal settings
change on another device.

The server stores and filters; the gateway renders each notification's title and body in the
device's language (its `locale`) from the template its plugin declares, and passes who asks
(checked now, like every request) to the server, never a user the device names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contracts.notifications import (
    Delivery,
    FollowGroup,
    GroupsQuery,
    MarkRead,
    NotificationQuery,
    NotificationsContract,
    PersonalChange,
    PersonalQuery,
    PersonalValues,
    StoredNotification,
)
from mesh.identity import Identity
from services.client.gateway.frames import DeviceError, Frame, RequestId
from services.client.gateway.requests import validate
from services.ui.screens import wanted_locales

if TYPE_CHECKING:
    from services.client.gateway.connection import DeviceConnection
    from services.client.gateway.state import Gateway


def rendered(gateway: Gateway, notification: StoredNotification,
             wanted: list[str]) -> dict[str, Any]:
    """The notification as a device shows it: title and body in the best of `wanted`."""
    template = gateway.entries.notifications.get(notification.template)
    if template is None:  # its plugin is off: show what is known
        title, body, locale = notification.template, "", ""
    else:
        ui = gateway.entries.screens.plugins.get(template.plugin)
        locales = ui.locales_for(wanted) if ui is not None else []
        title, body = template.rendered(notification.payload,
                                        ui.catalogs if ui is not None else {}, locales)
        locale = locales[0] if locales else ""
    return {"id": notification.id, "template": notification.template,
            "group": notification.group, "title": title, "body": body, "locale": locale,
            "payload": notification.payload, "sent_ms": notification.sent_ms,
            "read": notification.read}


def _stub(connection: DeviceConnection) -> NotificationsContract:
    return NotificationsContract(connection.gateway.rpc)


def _locales(connection: DeviceConnection, frame: Frame) -> list[str]:
    if "locale" in frame:
        connection.locales = wanted_locales(frame.get("locale"))
    return connection.locales


async def notifications(connection: DeviceConnection, request_id: RequestId,
                        frame: Frame) -> None:
    identity = await connection.who()
    query = validate(NotificationQuery, {k: frame[k] for k in ("before", "limit", "unread_only")
                                         if k in frame} | {"identity": identity},
                     "invalid_request", "the request")
    found = await _stub(connection).list_notifications(query)
    wanted = _locales(connection, frame)
    connection.send({"type": "result", "id": request_id, "result": {
        "items": [rendered(connection.gateway, n, wanted) for n in found.items],
        "unread": found.unread}})


async def mark_read(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    request = validate(MarkRead, {k: frame[k] for k in ("ids", "all") if k in frame}
                       | {"identity": identity}, "invalid_request", "the request")
    if not request.ids and not request.all:
        raise DeviceError("invalid_request", "mark_read needs ids or all: true")
    left = await _stub(connection).mark_read(request)
    connection.send({"type": "result", "id": request_id, "result": left.model_dump()})


async def follow(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    request = validate(FollowGroup, {k: frame.get(k) for k in ("group", "following")}
                       | {"identity": identity}, "invalid_request", "the request")
    state = await _stub(connection).follow_group(request)
    connection.send({"type": "result", "id": request_id, "result": state.model_dump()})


async def groups(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    found = await _stub(connection).notification_groups(GroupsQuery(identity=identity))
    connection.send({"type": "result", "id": request_id, "result": found.model_dump()})


async def personal_settings(connection: DeviceConnection, request_id: RequestId,
                            frame: Frame) -> None:
    identity = await connection.who()
    request = validate(PersonalQuery, {"user": identity.user, "plugin": frame.get("plugin")},
                       "invalid_request", "the request")
    values = await _stub(connection).personal_settings(request)
    connection.send({"type": "result", "id": request_id, "result": values.model_dump()})


async def change_personal_settings(connection: DeviceConnection, request_id: RequestId,
                                   frame: Frame) -> None:
    identity = await connection.who()
    request = validate(PersonalChange, {"user": identity.user, "plugin": frame.get("plugin"),
                                        "values": frame.get("values")},
                       "invalid_request", "the request")
    values = await _stub(connection).put_personal_settings(request)
    connection.send({"type": "result", "id": request_id, "result": values.model_dump()})


HANDLERS = {
    "notifications": notifications,
    "mark_read": mark_read,
    "follow": follow,
    "groups": groups,
    "personal_settings": personal_settings,
    "change_personal_settings": change_personal_settings,
}

# -- pushed ------------------------------------------------------------------------------------


def addressed(delivery: Delivery, identity: Identity) -> bool:
    """Whether `delivery` is for `identity` and it may see it."""
    if identity.user in delivery.excepted or not identity.may(delivery.permission):
        return False
    return (delivery.everyone or identity.user in delivery.users
            or bool(set(identity.roles) & set(delivery.roles)))


def deliver(gateway: Gateway, delivery: Delivery) -> int:
    """Push a stored notification to the signed-in devices of the people it is for; how many
    devices got it."""
    sent = 0
    for connection in list(gateway.connections):
        identity = connection.identity
        if identity is None or connection.token is None or not addressed(delivery, identity):
            continue
        connection.send({"type": "notification", "id": None, "notification": rendered(
            gateway, delivery.notification, connection.locales)})
        sent += 1
    return sent


def personal_changed(gateway: Gateway, values: PersonalValues) -> None:
    """Push a user's new personal settings to every device they are signed in on."""
    for connection in list(gateway.connections):
        identity = connection.identity
        if identity is not None and connection.token is not None \
                and identity.user == values.user:
            connection.send({"type": "personal_settings", "id": None, "plugin": values.plugin,
                             "values": values.values})
