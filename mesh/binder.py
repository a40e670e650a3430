"""The one lifecycle every kind of plugin entry is served with (Nameko's Extension is the model).

A binder serves one kind of entry — RPCs and actions, topics, tasks, admin routes — for one
plugin on one service instance. The plugin host makes one binder of each kind its service has
when a plugin starts, hands each the entries its part declares (the binder claims the kinds it
serves), then runs the same steps on all of them: `start` taking work, `stop_taking` it, `drain`
what runs, `close` to remove what the plugin left registered. A new kind of entry is a new binder
class given to the services that serve it: no change to the host, the context or the other
binders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mesh.contract import Contract

Entry = tuple[Any, Callable[..., Any]]  # what a part declares: (target, handler)


class Binder:
    """Base of the binders: tracks what runs, so that `drain` is the same for every kind."""

    # The declaration types this binder serves (Rpc, Task, Topic, …), for the host to dispatch.
    claims: ClassVar[tuple[type, ...]] = ()

    def __init__(self, plugin: str, contract: type[Contract] | None) -> None:
        self.plugin = plugin
        self.contract = contract
        self._inflight: set[asyncio.Task[Any]] = set()

    def add(self, target: Any, handler: Callable[..., Any]) -> Iterable[Entry]:
        """Take one declared entry; raise PluginError when it cannot be served here. Returns
        entries it derives for other binders (a topic's snapshot is an RPC, say)."""
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        """What this binder serves, by name, for the plugin's start log line."""
        return []

    async def start(self) -> None:
        """Start taking work (after the part's own start)."""

    async def stop_taking(self) -> None:
        """Take no more work; what runs goes on."""

    async def drain(self, timeout: float) -> int:
        """Wait for what runs; past `timeout` cut it. Returns how many were cut."""
        if not self._inflight:
            return 0
        _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
        if pending:
            self._cutting()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    def _cutting(self) -> None:
        """Called before running work is cut by a drain past its timeout."""

    async def close(self) -> None:
        """Remove whatever the binder registered outside itself (after the part stopped)."""

    def _track(self) -> Callable[[], None]:
        """Count the current asyncio task as running work until the returned function is
        called."""
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        return lambda: self._inflight.discard(task)


BinderKind = Callable[[str, "type[Contract] | None"], Binder]  # (plugin, contract) → a binder
