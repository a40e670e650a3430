"""What a plugin author writes: a `PluginPart` per service, and `handles` to mark RPC and task
handlers."""

from __future__ import annotations

import asyncio
import inspect
import pickle
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import structlog
from pydantic import BaseModel

from mesh.contract import Contract, Rpc, Task, Topic
from mesh.errors import PluginError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from mesh.plugin.host import PluginHost
    from mesh.plugin.manifest import PluginManifest

ContractT = TypeVar("ContractT", bound=Contract)
ApiT = TypeVar("ApiT")
HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[Any]])

_RPC_MARK = "__mesh_rpc__"


AnyHandlerT = TypeVar("AnyHandlerT", bound=Callable[..., Any])


@overload
def handles(target: Rpc[Any, Any] | Topic[Any, Any]) -> Callable[[HandlerT], HandlerT]: ...


@overload
def handles(target: Task[Any, Any]) -> Callable[[AnyHandlerT], AnyHandlerT]: ...


def handles(target: Rpc[Any, Any] | Topic[Any, Any] | Task[Any, Any]) -> Callable[[Any], Any]:
    """Mark a method of a PluginPart as the handler of an RPC, action or task, or the provider
    of a topic; the host registers it on load. A CPU-bound task's handler is a plain function
    (a staticmethod, say), run in the worker's process pool: put `@handles(...)` under
    `@staticmethod`."""

    def mark(method: Any) -> Any:
        setattr(method, _RPC_MARK, target)
        return method

    return mark


class PluginContext:
    """A plugin's handle on its service. Everything registered through it is owned by the host
    and removed when the plugin stops, so a plugin can be stopped and started again."""

    def __init__(self, host: PluginHost, manifest: PluginManifest) -> None:
        self._host = host
        self.manifest = manifest
        self.plugin = manifest.name
        self.service = host.service
        self.instance = host.instance
        self.log = structlog.get_logger(f"mesh.plugin.{self.plugin}").bind(
            service=self.service, instance=self.instance, plugin=self.plugin
        )
        self.handlers: list[tuple[Rpc[Any, Any], Callable[[Any], Awaitable[Any]]]] = []
        self.providers: list[tuple[Topic[Any, Any], Callable[[Any], Awaitable[Any]]]] = []
        self.default_action: Callable[[Any], Awaitable[Any]] | None = None
        self.admin_routers: list[tuple[Any, str | None]] = []
        self.task_handlers: list[tuple[Task[Any, Any], Callable[[Any], Any]]] = []
        self.api_object: object | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    def stub(self, contract: type[ContractT]) -> ContractT:
        """A typed stub that calls `contract`'s RPCs and enqueues its tasks as this service."""
        return contract(self._host.caller)

    def serve_task(self, task: Task[Any, Any], handler: Callable[[Any], Any]) -> None:
        """Run `task` with `handler` on this worker (what `@handles(task)` does)."""
        if task.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot run {task.qualname}: it is another "
                              "plugin's task")
        if self.service != "worker":
            raise PluginError(f"{task.qualname} is a task: tasks run on the worker, not the "
                              f"{self.service}")
        if any(existing.name == task.name for existing, _ in self.task_handlers):
            raise PluginError(f"{task.qualname} has a handler already")
        if task.cpu_bound:
            if inspect.iscoroutinefunction(handler) or inspect.ismethod(handler):
                raise PluginError(
                    f"{task.qualname} is CPU-bound: its handler runs in another process, so it "
                    "must be a plain function (a module function or a staticmethod), not "
                    "a coroutine or a method")
            try:
                pickle.dumps(handler)
            except Exception as exc:
                raise PluginError(f"{task.qualname}'s handler cannot be sent to the process "
                                  f"pool (it must be importable by name): {exc}") from None
        elif not inspect.iscoroutinefunction(handler):
            raise PluginError(f"{task.qualname}'s handler must be a coroutine (async def); "
                              "declare the task cpu_bound=True to run a plain function in "
                              "the process pool")
        self.task_handlers.append((task, handler))

    def serve(self, spec: Rpc[Any, Any] | Topic[Any, Any],
              handler: Callable[[Any], Awaitable[Any]]) -> None:
        """Handle an RPC or action, or provide a topic: `handler` takes the request (or the
        selector) and returns the reply (or the payload)."""
        if isinstance(spec, Topic):
            self._provide(spec, handler)
            return
        rpc = spec
        if rpc.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot serve {rpc.qualname}: it is another "
                              "plugin's RPC")
        if rpc.service != self.service:
            raise PluginError(f"{rpc.qualname} is served by the {rpc.service}, not the "
                              f"{self.service}")
        if any(existing.name == rpc.name for existing, _ in self.handlers):
            raise PluginError(f"{rpc.qualname} has a handler already")
        self.handlers.append((rpc, handler))

    def _provide(self, topic: Topic[Any, Any], provide: Callable[[Any], Awaitable[Any]]) -> None:
        if topic.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot provide {topic.qualname}: it is another "
                              "plugin's topic")
        if self.service != "server":
            raise PluginError(f"topics are provided on the server, not the {self.service}")
        if any(existing is topic for existing, _ in self.providers):
            raise PluginError(f"{topic.qualname} has a provider already")
        self.providers.append((topic, provide))

    def declared_permissions(self) -> dict[str, str]:
        """Every permission there is on this service, by address: the platform's and every
        discovered plugin's (an uploaded plugin's too, once installed)."""
        from mesh.permissions import declared_permissions

        return declared_permissions({name: source.manifest
                                     for name, source in self._host.sources.items()
                                     if source.manifest is not None})

    def add_admin_routes(self, router: Any, *, permission: str | None = None) -> None:
        """Mount a FastAPI APIRouter in the admin API under /api/v1/plugins/<plugin>/admin
        (Peek's addAdminResource); removed on stop. Its routes need a signed-in caller with
        `permission` (default: the platform's mesh/admin/operate)."""
        if self.service != "server":
            raise PluginError(f"admin routes live on the server, not the {self.service}")
        if permission is not None:
            from mesh.permissions import check_address

            check_address(permission)
        self.admin_routers.append((router, permission))

    def serve_default_action(self, processor: Callable[[Any], Awaitable[Any]]) -> None:
        """Process every action of this plugin's contract that has no processor of its own."""
        if self.service != "server":
            raise PluginError(f"actions are processed on the server, not the {self.service}")
        self.default_action = processor

    async def notify(self, topic: Topic[Any, Any], selector: BaseModel | None = None) -> None:
        """Tell the watchers of `selector` (or of every selector of `topic`) that its data
        changed: the provider runs once per watched selector and the new payload is published.
        Returns once it is."""
        if topic.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot notify {topic.qualname}: it is "
                              f"{topic.plugin}'s topic; ask {topic.plugin}'s API to")
        observables = self._host.observables
        provider = observables.provider(topic) if observables is not None else None
        if provider is None:
            raise PluginError(f"{topic.qualname} has no provider on this {self.service}")
        await provider.notify(selector)

    def publish_api(self, api: object) -> None:
        """Offer `api` to other plugins on this service (Peek's publishedServerApi)."""
        self.api_object = api

    def api(self, plugin: str, kind: Callable[..., ApiT]) -> ApiT:
        """The API `plugin` published on this service, checked against the type it exports.

        `kind` is the ABC or runtime-checkable Protocol the plugin exports; it is typed as a
        callable only so that mypy accepts abstract classes here.
        """
        if not isinstance(kind, type):
            raise TypeError("kind must be the API's class")
        if plugin not in self.manifest.depends:
            raise PluginError(f"{self.plugin} uses {plugin}'s API but does not list {plugin} "
                              "in its manifest's depends")
        api = self._host.published_api(plugin)
        if api is None:
            raise PluginError(f"{plugin} has published no API on the {self.service}")
        if not isinstance(api, kind):
            raise PluginError(f"{plugin}'s API is {type(api).__name__}, not a {kind.__name__}")
        return cast(ApiT, api)

    @property
    def settings(self) -> Any:
        """The plugin's current settings (its contract's settings model), or None."""
        return self._host.settings_for(self.plugin)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """An async SQLAlchemy session on the plugin's database (server and worker only)."""
        database = self._host.database
        if database is None:
            raise PluginError(f"the {self.service} has no database: plugins get sessions on "
                              "the server and the worker only")
        if self.manifest.db_schema is None:
            raise PluginError(f"{self.plugin} declares no [storage] in its manifest")
        return database.session(self.manifest.db_schema)

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run `coro` in the background for as long as the plugin runs; cancelled on stop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("plugin.task_failed", task=task.get_name(), exc_info=task.exception())


class PluginPart:
    """Base of a plugin's part on one service. Override what you need; all hooks are async.

    load: register handlers and publish APIs (nothing is served yet).
    start: begin work; the host starts serving this part's RPCs right after.
    stop: the host has stopped serving and drained in-flight calls; release what start took.
    unload: undo load.
    on_settings: the plugin's settings changed while it runs.
    """

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    async def load(self) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def unload(self) -> None:
        pass

    async def on_settings(self, settings: Any) -> None:
        """An administrator changed the plugin's settings; `self.ctx.settings` has them too."""

    def marked_handlers(
        self,
    ) -> list[tuple[Rpc[Any, Any] | Topic[Any, Any] | Task[Any, Any], Callable[[Any], Any]]]:
        found: list[tuple[Rpc[Any, Any] | Topic[Any, Any] | Task[Any, Any],
                          Callable[[Any], Any]]] = []
        for attr in dir(type(self)):
            target = getattr(getattr(type(self), attr, None), _RPC_MARK, None)
            if isinstance(target, Rpc | Topic | Task):
                found.append((target, getattr(self, attr)))
        return found
