"""The ${name} plugin on the client.

The client is the service devices connect to over WebSocket. It caches and fans out the
server's topics by itself; a part here runs what devices need close by.
"""

${from_import("mesh", ["PluginPart"])}


class ${cls}Client(PluginPart):
    async def start(self) -> None:
        self.ctx.log.info("started_on_client")

    async def stop(self) -> None:
        self.ctx.log.info("stopped_on_client")
