"""The server's side of notifications and personal settings: the platform RPCs any service
sends notifications with and the client service asks on its devices' behalf, backed by the
platform schema, with every stored notification and changed personal setting published on the
control channel for the client services to push to devices."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ValidationError

from contracts.notifications import (
    Delivery,
    FollowGroup,
    GroupList,
    GroupsQuery,
    GroupState,
    InvalidPayload,
    InvalidSettings,
    MarkRead,
    NoPersonalSettings,
    NotificationList,
    NotificationQuery,
    NotificationsContract,
    NotificationSent,
    PersonalChange,
    PersonalQuery,
    PersonalValues,
    SendNotification,
    UnknownTemplate,
    UnreadCount,
    WebhookContract,
    WebhookPost,
)
from mesh.errors import NotAllowed
from mesh.names import NOTIFICATION_KEY, personal_key
from mesh.notification import Notification
from mesh.platform.channels import ChannelRegistry, NotificationChannel
from mesh.platform.notifications import NotificationStore
from mesh.platform.personal import PersonalStore, effective
from mesh.rpc.binder import RpcBinder
from mesh.rpc.context import current_call
from mesh.validation import field_errors

if TYPE_CHECKING:
    from services.server import ServerService


log = structlog.get_logger("mesh.notifications")


class DevicesChannel(NotificationChannel):
    """The bundled channel to devices: the client services push each notification to the
    signed-in devices of the people it is for (the others list it when they are back)."""

    name = "devices"

    def __init__(self, server: ServerService) -> None:
        self.server = server

    async def deliver(self, delivery: Delivery, template: Notification[Any]) -> None:
        await self.server.control.publish(NOTIFICATION_KEY, delivery)


class WebhookChannel(NotificationChannel):
    """The bundled outgoing webhook: each notification, rendered in the template's declared
    language, as a JSON body a worker POSTs signed (mesh/webhook.py), with retries."""

    name = "webhook"

    def __init__(self, server: ServerService) -> None:
        self.server = server

    async def deliver(self, delivery: Delivery, template: Notification[Any]) -> None:
        sent = delivery.notification
        title, body = template.rendered(sent.payload)
        document = {"id": sent.id, "template": sent.template, "group": sent.group,
                    "title": title, "body": body, "payload": sent.payload,
                    "sent_ms": sent.sent_ms, "to": {"users": delivery.users,
                                                    "roles": delivery.roles,
                                                    "followers": delivery.everyone,
                                                    "excepted": delivery.excepted}}
        await WebhookContract(self.server.caller).post_webhook.enqueue(
            WebhookPost(delivery=str(sent.id), body=json.dumps(document, separators=(",", ":"))),
            idempotency_key=f"notification-{sent.id}", want_result=False)


class NotificationDesk:
    def __init__(self, server: ServerService) -> None:
        assert server.database is not None
        self.server = server
        self.store = NotificationStore(server.database, self.templates,
                                       retention=server.settings.notification_retention)
        self.personal = PersonalStore(server.database)
        bundled: list[NotificationChannel] = [DevicesChannel(server)]
        if server.settings.notification_webhook_url:
            bundled.append(WebhookChannel(server))
        self.channels = ChannelRegistry(*bundled)

    def templates(self) -> Mapping[str, Notification[Any]]:
        """Every template the server's plugins declare, by qualname."""
        found: dict[str, Notification[Any]] = {}
        for name in self.server.plugins.order:
            contract = self.server.host.contract(name)
            if contract is not None:
                found.update({t.qualname: t for t in contract.notifications.values()})
        return found

    def serve(self, endpoint: RpcBinder) -> None:
        endpoint.add(NotificationsContract.send_notification, self.send)
        endpoint.add(NotificationsContract.list_notifications, self.listing)
        endpoint.add(NotificationsContract.mark_read, self.mark_read)
        endpoint.add(NotificationsContract.follow_group, self.follow)
        endpoint.add(NotificationsContract.notification_groups, self.groups)
        endpoint.add(NotificationsContract.personal_settings, self.read_personal)
        endpoint.add(NotificationsContract.put_personal_settings, self.change_personal)

    async def send(self, request: SendNotification) -> NotificationSent:
        template = self.templates().get(request.template)
        if template is None:
            raise UnknownTemplate(f"no notification template {request.template!r}")
        request = self._from_its_plugin(request, template)
        try:
            payload = template.payload.model_validate(request.payload).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidPayload(f"the payload does not match {template.payload.__name__}",
                                 details=field_errors(exc)) from None
        delivery = await self.store.store(template, payload, request)
        for channel in list(self.channels.channels.values()):
            try:
                await channel.deliver(delivery, template)
            except Exception:  # stored already: one channel failing stops no other
                log.exception("notifications.channel_failed", channel=channel.name,
                              notification=delivery.notification.id)
        notification = delivery.notification
        return NotificationSent(id=notification.id, sent_ms=notification.sent_ms,
                                delivered_live=-1 if delivery.everyone else len(delivery.users))

    def _from_its_plugin(self, request: SendNotification,
                         template: Notification[Any]) -> SendNotification:
        """A service sends only the templates of plugins that run on its kind: the kind is
        the broker's word (its `user_id`, checked by ServingAcl), so an agent cannot send a
        server plugin's notification by calling the RPC itself, and `sent_by` says the
        kind the bus vouches for, not what the request wrote. A person's own calls (`cli`,
        the admin API) may send any template."""
        call = current_call()
        kind = call.caller if call is not None else "server"
        if kind == "cli":
            return request
        if template.plugin not in self.server.plugins.for_service(kind):
            raise NotAllowed(f"the {kind} may not send {template.qualname}: "
                             f"{template.plugin} does not run on the {kind}",
                             details={"template": template.qualname, "caller": kind})
        return request.model_copy(update={"sent_by": f"{kind}/{template.plugin}"})

    async def listing(self, request: NotificationQuery) -> NotificationList:
        return await self.store.listing(request.identity, before=request.before,
                                     limit=request.limit, unread_only=request.unread_only)

    async def mark_read(self, request: MarkRead) -> UnreadCount:
        return UnreadCount(unread=await self.store.mark_read(request.identity, request.ids,
                                                             request.all))

    async def follow(self, request: FollowGroup) -> GroupState:
        return await self.store.follow(request.identity, request.group, request.following)

    async def groups(self, request: GroupsQuery) -> GroupList:
        return GroupList(groups=await self.store.group_states(request.identity))

    def _personal_model(self, plugin: str) -> type[BaseModel]:
        contract = self.server.host.contract(plugin) if plugin in self.server.plugins.order \
            else None
        model = contract.personal_settings_model if contract is not None else None
        if model is None:
            raise NoPersonalSettings(f"{plugin!r} declares no personal settings")
        return model

    async def read_personal(self, request: PersonalQuery) -> PersonalValues:
        model = self._personal_model(request.plugin)
        settings = effective(model, await self.personal.chosen(request.user, request.plugin))
        return PersonalValues(user=request.user, plugin=request.plugin,
                              values=settings.model_dump(mode="json"))

    async def change_personal(self, request: PersonalChange) -> PersonalValues:
        model = self._personal_model(request.plugin)
        try:
            settings = await self.personal.change(request.user, request.plugin, model,
                                                  request.values)
        except ValidationError as exc:
            raise InvalidSettings(f"the values do not match {model.__name__}",
                                  details=field_errors(exc)) from None
        except ValueError as exc:
            raise InvalidSettings(str(exc)) from None
        values = PersonalValues(user=request.user, plugin=request.plugin,
                                values=settings.model_dump(mode="json"))
        await self.server.control.publish(personal_key(request.plugin), values)
        return values
