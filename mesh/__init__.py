"""mesh: a plugin platform built as an asyncio microservice mesh on RabbitMQ.

What plugin authors import lives here; contract modules import from `mesh.contract`.
The names are loaded when first used, so importing `mesh.contract` (every contract module
does, and so does each process that only reads contracts) does not load the plugin runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mesh.contract import Contract, Empty, rpc, task
    from mesh.errors import HookVeto, RpcError, TaskError
    from mesh.plugin.hooks import HookCall
    from mesh.plugin.part import PluginContext, PluginPart, handles
    from mesh.rpc.context import current_call, remaining_time
    from mesh.tasks.context import TaskInfo, current_task

_HOME = {
    "Contract": "mesh.contract", "Empty": "mesh.contract", "rpc": "mesh.contract",
    "task": "mesh.contract",
    "HookVeto": "mesh.errors", "RpcError": "mesh.errors", "TaskError": "mesh.errors",
    "HookCall": "mesh.plugin.hooks",
    "PluginContext": "mesh.plugin.part", "PluginPart": "mesh.plugin.part",
    "handles": "mesh.plugin.part",
    "current_call": "mesh.rpc.context", "remaining_time": "mesh.rpc.context",
    "TaskInfo": "mesh.tasks.context", "current_task": "mesh.tasks.context",
}

__all__ = [
    "Contract", "Empty", "HookCall", "HookVeto", "PluginContext", "PluginPart", "RpcError",
    "TaskError", "TaskInfo", "__version__", "current_call", "current_task", "handles",
    "remaining_time", "rpc", "task",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value
