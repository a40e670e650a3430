"""The ${name} plugin on the agent.

The agent is the service that talks to systems outside the mesh; this part answers the
server's questions about the machine it runs on.
"""

import os
import socket

${from_import("mesh", ["Empty", "PluginPart", "handles"])}

${from_import(f"{package}.contract", ["AgentInfo", f"{cls}Contract"])}


class ${cls}Agent(PluginPart):
    @handles(${cls}Contract.agent_info)
    async def agent_info(self, request: Empty) -> AgentInfo:
        return AgentInfo(instance=self.ctx.instance, host=socket.gethostname(), pid=os.getpid())
