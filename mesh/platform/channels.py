"""Delivery channels: the ways a stored notification reaches people (docs/plugin-guide.md,
"Delivery channels").

The server hands every notification it stores to each channel, after storing it: a channel
failing is logged and never fails the send, nor the other channels. Two are bundled — the
devices (the client services push it to signed-in devices) and an outgoing webhook (on when
MESH_NOTIFICATION_WEBHOOK_URL is set) — and a plugin adds its own on the server with
`ctx.add_notification_channel(channel)`; it is removed when the plugin stops.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from contracts.notifications import Delivery
from mesh.binder import Binder, Entry
from mesh.errors import PluginError
from mesh.notification import Notification

if TYPE_CHECKING:
    from mesh.contract import Contract


class NotificationChannel(abc.ABC):
    """One way notifications reach people. `deliver` runs on the server for every notification
    stored, with the template it was sent from (to render it: `template.rendered(payload)`)."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    async def deliver(self, delivery: Delivery, template: Notification[Any]) -> None: ...


class ChannelRegistry:
    """The channels in force on one server, by name."""

    def __init__(self, *bundled: NotificationChannel) -> None:
        self.channels: dict[str, NotificationChannel] = {c.name: c for c in bundled}

    def add(self, channel: NotificationChannel) -> None:
        if not channel.name or channel.name in self.channels:
            raise PluginError(f"a notification channel needs a name of its own, not "
                              f"{channel.name!r} (in use: {', '.join(sorted(self.channels))})")
        self.channels[channel.name] = channel

    def remove(self, name: str) -> None:
        self.channels.pop(name, None)


class ChannelBinder(Binder):
    """The channels one plugin adds (`ctx.add_notification_channel`), in force while it runs."""

    claims = (NotificationChannel,)

    def __init__(self, plugin: str, contract: type[Contract] | None = None, *,
                 registry: ChannelRegistry) -> None:
        super().__init__(plugin, contract)
        self.registry = registry
        self.added: list[NotificationChannel] = []
        self.started: list[str] = []

    def add(self, target: Any, handler: Any) -> Iterable[Entry]:
        self.added.append(target)
        return ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.added]

    async def start(self) -> None:
        for channel in self.added:
            if channel.name not in self.started:
                self.registry.add(channel)
                self.started.append(channel.name)

    async def close(self) -> None:
        for name in self.started:
            self.registry.remove(name)
        self.started = []
