"""The worker: runs plugins' tasks (docs/tasks.md) and background work.

It consumes the queue of every task its plugins handle, runs async tasks on its event loop and
CPU-bound tasks in a process pool, and gives plugins database sessions, as the server does.
"""

from __future__ import annotations

from mesh.service import Service
from mesh.tasks.worker import TaskRuntime


class WorkerService(Service):
    kind = "worker"
    uses_database = True

    def _task_runtime(self) -> TaskRuntime:
        return TaskRuntime(
            self.transport, service=self.kind, instance=self.instance,
            concurrency=self.settings.task_concurrency, processes=self.settings.task_processes,
        )
