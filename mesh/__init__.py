"""mesh: a plugin platform built as an asyncio microservice mesh on RabbitMQ.

What plugin authors import lives here; contract modules import from `mesh.contract`.
"""

__version__ = "0.1.0"

from mesh.contract import Contract, Empty, rpc
from mesh.errors import RpcError
from mesh.plugin.part import PluginContext, PluginPart, handles
from mesh.rpc.context import current_call, remaining_time

__all__ = [
    "Contract",
    "Empty",
    "PluginContext",
    "PluginPart",
    "RpcError",
    "__version__",
    "current_call",
    "handles",
    "remaining_time",
    "rpc",
]
