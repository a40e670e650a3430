"""Serving a plugin's topics on the server: a provider per topic, its snapshot RPC handed to
the RPC binder, and `notify` for the plugin's context (it queues the refresh and returns)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel

from mesh.binder import Binder, Entry
from mesh.contract import Topic
from mesh.errors import PluginError
from mesh.observable.provider import ObservableServer, TopicProvider

if TYPE_CHECKING:
    from mesh.contract import Contract


class TopicBinder(Binder):
    """The topics one plugin provides on one server instance."""

    claims = (Topic,)

    def __init__(self, plugin: str, contract: type[Contract] | None = None, *,
                 observables: ObservableServer) -> None:
        super().__init__(plugin, contract)
        self.observables = observables
        self.providers: dict[str, TopicProvider] = {}
        self.log = structlog.get_logger("mesh.observable").bind(plugin=plugin)

    def add(self, target: Any, handler: Callable[..., Any]) -> Iterable[Entry]:
        topic: Topic[Any, Any] = target
        if topic.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot provide {topic.qualname}: it is another "
                              "plugin's topic")
        if topic.name in self.providers:
            raise PluginError(f"{topic.qualname} has a provider already")
        provider = self.observables.new_provider(topic, handler)
        self.providers[topic.name] = provider
        return [(topic.snapshot, provider.snapshot)]  # the snapshot is an RPC of the plugin's

    @property
    def names(self) -> list[str]:
        return sorted(self.providers)

    async def start(self) -> None:
        for provider in self.providers.values():
            self.observables.attach(provider)
        declared = self.contract.topics if self.contract is not None else {}
        for name in sorted(declared.keys() - self.providers.keys()):
            self.log.warning("plugin.topic_without_provider", topic=name)

    async def close(self) -> None:
        for provider in self.providers.values():
            self.observables.remove(provider.topic)
            await provider.close()

    async def notify(self, topic: Topic[Any, Any], selector: BaseModel | None) -> None:
        provider = self.providers.get(topic.name)
        if provider is None:
            raise PluginError(f"{topic.qualname} has no provider on this server")
        await provider.notify(selector)
