"""What a signed-in device asks for: the catalog, topics to watch, actions, RPC calls. Each
request is checked against the permissions its user holds now."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mesh import audit
from mesh.errors import Forbidden
from mesh.names import observable_key
from mesh.observable.keys import selector_key
from mesh.rpc import once
from mesh.rpc.once import ACTION_ID
from mesh.validation import field_errors
from services.client.gateway.frames import INT64, DeviceError, Frame, RequestId, TopicValues
from services.ui.screens import wanted_locales

if TYPE_CHECKING:
    from services.client.gateway.connection import DeviceConnection


def _validate(model: Any, data: Any, code: str, what: str) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise DeviceError(code, f"{what} does not match {model.__name__}",
                          field_errors(exc)) from None


validate = _validate  # for the other request modules (notifications.py)


async def catalog(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    connection.locales = wanted_locales(frame.get("locale"))  # notifications pushed use it
    connection.send({"type": "catalog", "id": request_id,
                     **connection.gateway.entries.describe(identity, connection.locales)})


async def subscribe(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    topic = connection.gateway.entries.find(identity, "topic", frame.get("topic"))
    connection.permit(identity, topic, "topic")
    selector = _validate(topic.selector, frame.get("selector"), "invalid_selector",
                         "the selector")
    if topic.user_field is not None:
        try:
            selector = topic.for_user(selector, identity.user)
        except Forbidden as exc:
            audit.denied(who=identity.user, what=topic.qualname,
                         permission=f"{topic.user_field}=self", where="devices", kind="topic",
                         device=connection.address)
            raise DeviceError("forbidden", exc.message, exc.details) from None
    known = _cached_version(frame.get("version"))
    subscriptions = connection.subscriptions
    cache = connection.gateway.cache
    key = observable_key(topic.plugin, topic.name, selector_key(selector))
    connection.gateway.quota.charge(connection.upstream, identity.user, key,
                                    upstream=cache.upstream, is_new=key not in cache.entries)
    subscriptions.reserve(request_id, topic)
    values = TopicValues(request_id, topic.qualname, known)

    def on_value(version: int, payload: str) -> None:
        connection.push(values.frame(version, payload))

    try:
        connection.send({"type": "subscribed", "id": request_id})
        unsubscribe = await connection.gateway.cache.subscribe(topic, selector, on_value)
    except BaseException:
        subscriptions.forget(request_id)
        raise
    if connection.closed or not subscriptions.settle(request_id, unsubscribe):
        unsubscribe()  # the device left, unsubscribed or was signed out meanwhile


async def unsubscribe(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    target = frame.get("subscription", request_id)
    end = connection.subscriptions.forget(target) if isinstance(target, str | int) else None
    if end is None:
        raise DeviceError("unknown_subscription", f"no subscription {target!r}")
    end()
    connection.send({"type": "unsubscribed", "id": request_id, "subscription": target})


async def action(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    entry = connection.gateway.entries.find(identity, "action", frame.get("action"))
    connection.permit(identity, entry, "action")
    model = _validate(entry.request, frame.get("payload"), "invalid_action", "the action")
    result = await connection.gateway.rpc.call(entry, model, user=identity.user,
                                               session=connection.session,
                                               headers=action_headers(frame))
    connection.send({"type": "result", "id": request_id,
                     "result": result.model_dump(mode="json")})


def action_headers(frame: Frame) -> dict[str, Any] | None:
    """An action frame's `action_id`, `made_at` and `base_version`, checked, as the headers
    that carry them to the server (docs/devices.md, Offline).

    With `sent_at` (the device's clock when it sent the frame) the action's age is measured
    on the device's clock alone, `sent_at - made_at`, and the time it was made is put on this
    service's clock: a device clock hours off does not make a fresh action look expired or
    from the future, nor an old one fresh."""
    action_id = frame.get("action_id")
    if action_id is None:
        for field in ("made_at", "sent_at", "base_version"):
            if field in frame:
                raise DeviceError("bad_frame", f"{field} goes with an action_id")
        return None
    if not isinstance(action_id, str) or not ACTION_ID.match(action_id):
        raise DeviceError("bad_frame", "action_id is 8 to 100 of A-Z a-z 0-9 _ . : -")
    made_at = frame.get("made_at")
    if not isinstance(made_at, int) or isinstance(made_at, bool) or made_at < 0:
        raise DeviceError("bad_frame", "an action_id needs made_at, the milliseconds since "
                          "the epoch when the device made the action")
    sent_at = frame.get("sent_at")
    if sent_at is not None:
        if not _is_int(sent_at) or not made_at <= sent_at < INT64:
            raise DeviceError("bad_frame", "sent_at is the milliseconds since the epoch when "
                              "the device sent the action, by the clock that set made_at "
                              "(not before it)")
        made_at = int(time.time() * 1000) - (sent_at - made_at)
    base_version = frame.get("base_version")
    if base_version is not None and not _is_int(base_version):
        raise DeviceError("bad_frame", "base_version is an integer (a topic's version)")
    return once.action_headers(action_id, made_at, base_version)


def _cached_version(value: Any) -> int | None:
    """The version a device has cached: an integer, or its decimal digits as a string (a
    JavaScript number cannot hold every 64-bit version exactly; mesh.js sends the digits it
    received)."""
    if isinstance(value, str) and VERSION_DIGITS.match(value):
        value = int(value)
    if value is None or (_is_int(value) and -INT64 <= value < INT64):
        return value
    raise DeviceError("bad_frame", "version is the version of the payload the device has "
                      "cached: an integer, or its digits as a string")


VERSION_DIGITS = re.compile(r"^-?[0-9]{1,20}$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def call(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    rpc = connection.gateway.entries.find(identity, "rpc", frame.get("rpc"))
    connection.permit(identity, rpc, "rpc")
    request = _validate(rpc.request, frame.get("payload"), "invalid_request", "the request")
    reply = await connection.gateway.rpc.call(rpc, request, user=identity.user,
                                           session=connection.session)
    connection.send({"type": "result", "id": request_id, "result": reply.model_dump(mode="json")})
