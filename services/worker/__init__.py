"""The worker: runs plugins' tasks (docs/tasks.md) and background work.

It consumes the queue of every task its plugins handle, runs async tasks on its event loop and
CPU-bound tasks in a process pool, and gives plugins database sessions, as the server does.
"""

from __future__ import annotations

from contracts.notifications import WebhookContract
from mesh.binder import BinderKind
from mesh.contract import Contract
from mesh.platform.store import PLATFORM
from mesh.service import Service
from mesh.tasks.binder import TaskBinder, TaskRuntime
from services.worker.webhook import WebhookPoster


class WorkerService(Service):
    kind = "worker"
    uses_database = True

    def _task_runtime(self) -> TaskRuntime:
        return TaskRuntime(
            self.transport, service=self.kind, instance=self.instance,
            concurrency=self.settings.task_concurrency, processes=self.settings.task_processes,
            ledger_max_result=self.settings.task_ledger_max_result
            if self.settings.task_ledger_retention > 0 else None,
        )

    def binder_kinds(self) -> list[BinderKind]:
        return [*super().binder_kinds(), self.task_binder]

    def task_binder(self, plugin: str, contract: type[Contract] | None = None) -> TaskBinder:
        assert self.task_runtime is not None
        return TaskBinder(plugin, contract, runtime=self.task_runtime,
                          middleware=self.middleware)

    async def started(self) -> None:
        """With MESH_NOTIFICATION_WEBHOOK_URL set, run the webhook channel's task."""
        self._platform_tasks: TaskBinder | None = None
        url, secret = (self.settings.notification_webhook_url,
                       self.settings.notification_webhook_secret)
        if not url:
            return
        if secret is None:
            self.log.error("webhook.no_secret", hint="set MESH_NOTIFICATION_WEBHOOK_SECRET: "
                           "webhook notifications wait in their queue until then")
            return
        binder = self.task_binder(PLATFORM)
        binder.add(WebhookContract.post_webhook, WebhookPoster(url, secret.get_secret_value()).post)
        await binder.start()
        self._platform_tasks = binder

    async def stop(self) -> None:
        binder = getattr(self, "_platform_tasks", None)
        if binder is not None:
            await binder.stop_taking()
            await binder.drain(self.settings.shutdown_timeout)
        await super().stop()
