"""What a signed-in device asks for: the catalog, topics to watch, actions, RPC calls. Each
request is checked against the permissions its user holds now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mesh.names import observable_key
from mesh.observable.keys import selector_key
from mesh.validation import field_errors
from services.client.gateway.frames import DeviceError, Frame, RequestId, TopicValues
from services.client.gateway.screens import wanted_locales

if TYPE_CHECKING:
    from services.client.gateway.connection import DeviceConnection


def _validate(model: Any, data: Any, code: str, what: str) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise DeviceError(code, f"{what} does not match {model.__name__}",
                          field_errors(exc)) from None


async def catalog(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    connection.send({"type": "catalog", "id": request_id,
                     **connection.gateway.entries.describe(
                         identity, wanted_locales(frame.get("locale")))})


async def subscribe(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    topic = connection.gateway.entries.find(identity, "topic", frame.get("topic"))
    connection.permit(identity, topic, "topic")
    selector = _validate(topic.selector, frame.get("selector"), "invalid_selector",
                         "the selector")
    subscriptions = connection.subscriptions
    cache = connection.gateway.cache
    key = observable_key(topic.plugin, topic.name, selector_key(selector))
    connection.gateway.quota.charge(connection.upstream, identity.user, key,
                                    upstream=cache.upstream, is_new=key not in cache.entries)
    subscriptions.reserve(request_id, topic)
    values = TopicValues(request_id, topic.qualname)

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
                                           session=connection.session)
    connection.send({"type": "result", "id": request_id,
                     "result": result.model_dump(mode="json")})


async def call(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    identity = await connection.who()
    rpc = connection.gateway.entries.find(identity, "rpc", frame.get("rpc"))
    connection.permit(identity, rpc, "rpc")
    request = _validate(rpc.request, frame.get("payload"), "invalid_request", "the request")
    reply = await connection.gateway.rpc.call(rpc, request, user=identity.user,
                                           session=connection.session)
    connection.send({"type": "result", "id": request_id, "result": reply.model_dump(mode="json")})
