"""noop on the worker: loads, starts and stops, to show the plugin runs there."""

from mesh import PluginPart


class NoopWorker(PluginPart):
    async def start(self) -> None:
        self.ctx.log.info("noop.started_on_worker")
