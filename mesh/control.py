"""The control channel: every service instance hears which plugins an administrator switched on
or off and their new settings, and applies them at once, without a restart.

Messages go to the exchange on `control.plugin.<plugin>`, `control.settings.<plugin>` and
`control.state` (the whole state, which a server publishes when it starts); each instance
consumes them, in order, on an exclusive queue of its own. The keys are in `mesh/names.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from contracts.platform import PlatformState, PluginInstalled, PluginSettingsChanged, PluginSwitch
from mesh import names
from mesh.bus.message import Delivery, Message, QueueSpec
from mesh.bus.topic import topic_matches
from mesh.bus.transport import Transport
from mesh.plugin.host import PluginHost

log = structlog.get_logger("mesh.control")
ModelT = TypeVar("ModelT", bound=BaseModel)

class ControlChannel:
    def __init__(self, transport: Transport, instance: str, host: PluginHost) -> None:
        self.transport = transport
        self.host = host
        self.queue = names.control_queue(transport.exchange, instance)
        self._order = asyncio.Lock()  # apply messages one at a time, in arrival order
        self.on_installed: Callable[[PluginInstalled], Awaitable[None]] | None = None
        self._listeners: list[tuple[str, type[BaseModel], Callable[[Any], Awaitable[None]]]] = []

    def listen(self, pattern: str, model: type[ModelT],
               handler: Callable[[ModelT], Awaitable[None]]) -> None:
        """Hand every message whose key matches `pattern` (a routing key, or a topic pattern
        such as `names.switch_key("*")`) to `handler`, as `model`: after this instance's plugin
        host has applied it, when it is a switch, an install or the platform's state. Several
        listeners of one key each get it, in the order they listened."""
        self._listeners.append((pattern, model, handler))

    async def start(self) -> None:
        await self.transport.declare_queue(QueueSpec(self.queue, (names.CONTROL_PATTERN,),
                                                     exclusive=True))
        await self.transport.consume(self.queue, self._on_message, prefetch=0, no_ack=True)

    async def _on_message(self, delivery: Delivery) -> None:
        message = delivery.message
        async with self._order:
            try:
                if topic_matches(names.switch_key("*"), message.routing_key):
                    switch = PluginSwitch.model_validate_json(message.body)
                    await self.host.switch(switch.plugin, switch.enabled)
                elif topic_matches(names.settings_key("*"), message.routing_key):
                    change = PluginSettingsChanged.model_validate_json(message.body)
                    await self.host.update_settings(change.plugin, change.values)
                elif topic_matches(names.installed_key("*"), message.routing_key):
                    if self.on_installed is not None:
                        await self.on_installed(PluginInstalled.model_validate_json(message.body))
                elif message.routing_key == names.STATE_KEY:
                    state = PlatformState.model_validate_json(message.body)
                    await self.host.apply_state(set(state.disabled), state.settings)
                for pattern, model, handler in list(self._listeners):
                    if topic_matches(pattern, message.routing_key):
                        await handler(model.model_validate_json(message.body))
            except ValidationError as exc:
                log.warning("control.bad_message", key=message.routing_key,
                            errors=exc.errors(include_url=False)[:3])

    async def publish(self, key: str, body: BaseModel) -> None:
        await self.transport.publish(Message(body=body.model_dump_json().encode(),
                                             routing_key=key))
