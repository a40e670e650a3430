"""Notifications and personal settings over the bus, served by the server (which stores them in
the platform schema): any service sends a notification and reads a user's personal settings;
the client service lists, marks read and follows on its devices' behalf, passing who asks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mesh.contract import Contract, Empty, rpc, task
from mesh.errors import RpcError
from mesh.identity import Identity
from mesh.notification import Recipients

QUALNAME = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
PLUGIN = r"^[a-z][a-z0-9_]*$"


class UnknownTemplate(RpcError):
    code = "mesh.unknown_template"


class UnknownGroup(RpcError):
    code = "mesh.unknown_group"


class InvalidPayload(RpcError):
    code = "mesh.invalid_payload"


class NoPersonalSettings(RpcError):
    code = "mesh.no_personal_settings"


class InvalidSettings(RpcError):
    code = "mesh.invalid_settings"


class SendNotification(BaseModel):
    template: str = Field(pattern=QUALNAME, max_length=129,
                          description="<plugin>.<name> of the template.")
    payload: dict[str, Any] = Field(description="Checked against the template's payload model.")
    to: Recipients
    sent_by: str = Field(max_length=200, description="The service and plugin that sent it.")


class NotificationSent(BaseModel):
    id: int
    sent_ms: int
    delivered_live: int = Field(description="Users addressed by name or role, and whether "
                                "the group's followers were (-1), for the logs.")


class StoredNotification(BaseModel):
    """One notification as a person sees it: the gateway renders its title and body in the
    device's language from the template and the payload."""

    id: int
    template: str
    group: str
    payload: dict[str, Any]
    sent_ms: int
    read: bool = False


class NotificationQuery(BaseModel):
    identity: Identity
    before: int | None = Field(default=None, ge=0, description="Only ids below this.")
    limit: int = Field(default=50, ge=1, le=200)
    unread_only: bool = False


class NotificationList(BaseModel):
    items: list[StoredNotification]
    unread: int = Field(description="Unread notifications the user may see, in all.")


class MarkRead(BaseModel):
    identity: Identity
    ids: list[int] = Field(default_factory=list, max_length=1000)
    all: bool = Field(default=False, description="Every notification the user has.")


class UnreadCount(BaseModel):
    unread: int


class FollowGroup(BaseModel):
    identity: Identity
    group: str = Field(pattern=QUALNAME, max_length=129)
    following: bool


class GroupState(BaseModel):
    group: str
    following: bool
    default: bool = Field(description="Whether the group is followed by default.")


class GroupsQuery(BaseModel):
    identity: Identity


class GroupList(BaseModel):
    groups: list[GroupState]


class Delivery(BaseModel):
    """Published on `control.notification` once stored: client services hand it to the
    signed-in devices of the people it is for (the `everyone`/`except` lists as stored)."""

    notification: StoredNotification
    permission: str | None
    users: list[str]
    roles: list[str]
    everyone: bool
    excepted: list[str]


class PersonalQuery(BaseModel):
    user: str = Field(min_length=1, max_length=200)
    plugin: str = Field(pattern=PLUGIN, max_length=64)


class PersonalChange(PersonalQuery):
    values: dict[str, Any] = Field(description="Fields to change; the others keep theirs.")


class PersonalValues(BaseModel):
    user: str
    plugin: str
    values: dict[str, Any] = Field(description="The effective values: the user's own over the "
                                   "model's defaults.")


class NotificationsContract(Contract, plugin="mesh"):
    """The platform's notification and personal settings RPCs."""

    send_notification = rpc(SendNotification, NotificationSent, service="server", timeout=10.0,
                            errors=[UnknownTemplate, InvalidPayload],
                            doc="Store a notification and deliver it to the people it is for.")
    list_notifications = rpc(NotificationQuery, NotificationList, service="server",
                             callers=["client"], timeout=5.0,
                             doc="A user's notifications, newest first, and the unread count.")
    mark_read = rpc(MarkRead, UnreadCount, service="server", callers=["client"], timeout=5.0,
                    doc="Mark a user's notifications read.")
    follow_group = rpc(FollowGroup, GroupState, service="server", callers=["client"],
                       timeout=5.0, errors=[UnknownGroup],
                       doc="Follow or unfollow a notification group.")
    notification_groups = rpc(GroupsQuery, GroupList, service="server", callers=["client"],
                              timeout=5.0, doc="The groups a user may follow, and whether "
                              "they do.")
    personal_settings = rpc(PersonalQuery, PersonalValues, service="server", timeout=5.0,
                            errors=[NoPersonalSettings],
                            doc="A user's effective personal settings of a plugin.")
    put_personal_settings = rpc(PersonalChange, PersonalValues, service="server",
                                callers=["client"], timeout=5.0,
                                errors=[NoPersonalSettings, InvalidSettings],
                                doc="Change a user's personal settings of a plugin.")


class WebhookPost(BaseModel):
    """One notification for the webhook: the JSON body exactly as it is sent and signed."""

    delivery: str = Field(max_length=40, description="The notification's id.")
    body: str = Field(max_length=1_000_000)


class WebhookContract(Contract, plugin="mesh"):
    """The webhook channel's task: a worker POSTs the body, signed; a failed POST (an error
    status, no answer) is retried with backoff and dead-lettered after its attempts."""

    post_webhook = task(WebhookPost, Empty, max_attempts=6, backoff=0.25, backoff_max=60,
                        time_limit=30, doc="POST one notification to the webhook.")
