"""mesh: a plugin platform built as an asyncio microservice mesh on RabbitMQ.

What plugin authors import lives here; contract modules import from `mesh.contract`.
"""

__version__ = "0.1.0"

from mesh.contract import Contract, Empty, rpc, task
from mesh.errors import HookVeto, RpcError, TaskError
from mesh.plugin.hooks import HookCall
from mesh.plugin.part import PluginContext, PluginPart, handles
from mesh.rpc.context import current_call, remaining_time
from mesh.tasks.context import TaskInfo, current_task

__all__ = [
    "Contract",
    "Empty",
    "HookCall",
    "HookVeto",
    "PluginContext",
    "PluginPart",
    "RpcError",
    "TaskError",
    "TaskInfo",
    "__version__",
    "current_call",
    "current_task",
    "handles",
    "remaining_time",
    "rpc",
    "task",
]
