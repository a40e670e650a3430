"""noop on the client: loads, starts and stops, to show the plugin runs there."""

from mesh import PluginPart


class NoopClient(PluginPart):
    async def start(self) -> None:
        self.ctx.log.info("noop.started_on_client")
