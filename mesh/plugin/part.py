"""What a plugin author writes: a `PluginPart` per service, and `handles` to mark RPC and task
handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import structlog
from pydantic import BaseModel

from mesh.binder import Binder
from mesh.contract import Contract, Rpc, Task, Topic
from mesh.errors import PluginError
from mesh.notification import Notification, Recipients
from mesh.platform.channels import NotificationChannel
from mesh.rpc.binder import DefaultAction
from mesh.storage.held import held_transaction

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from contracts.notifications import NotificationSent
    from mesh.caller import Caller
    from mesh.plugin.manifest import PluginManifest
    from mesh.storage.database import Database

ContractT = TypeVar("ContractT", bound=Contract)
ApiT = TypeVar("ApiT")
PayT = TypeVar("PayT", bound=BaseModel)
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


@dataclass(frozen=True)
class AdminRoutes:
    """What `ctx.add_admin_routes` declares: a FastAPI router for the admin API, behind
    `permission`."""

    permission: str | None = None


# Where each kind of entry is served, for the error when a part declares one elsewhere.
_SERVED_ON: dict[type, str] = {
    Task: "tasks run on the worker",
    Topic: "topics are provided on the server",
    AdminRoutes: "admin routes live on the server",
    NotificationChannel: "notification channels are added on the server",
}


@dataclass(frozen=True)
class ServiceFacilities:
    """What a service gives every plugin context it makes (Home Assistant hands a panel its
    `hass` the same way): made once by the plugin host, never filled in later."""

    service: str
    instance: str
    caller: Caller
    database: Database | None
    settings_for: Callable[[str], Any]
    published_api: Callable[[str], object | None]
    declared_permissions: Callable[[], dict[str, str]]
    contract_of: Callable[[str], type[Contract] | None] = lambda name: None


class PluginContext:
    """A plugin's handle on its service. Everything registered through it is owned by the host
    and removed when the plugin stops, so a plugin can be stopped and started again."""

    def __init__(self, manifest: PluginManifest, facilities: ServiceFacilities,
                 binders: Sequence[Binder] = ()) -> None:
        self.manifest = manifest
        self.plugin = manifest.name
        self.service = facilities.service
        self.instance = facilities.instance
        self._facilities = facilities
        self._binders = list(binders)
        self.log = structlog.get_logger(f"mesh.plugin.{self.plugin}").bind(
            service=self.service, instance=self.instance, plugin=self.plugin
        )
        self.api_object: object | None = None
        self.background: set[asyncio.Task[Any]] = set()

    def stub(self, contract: type[ContractT]) -> ContractT:
        """A typed stub that calls `contract`'s RPCs and enqueues its tasks as this service."""
        return contract(self._facilities.caller)

    def serve(self, target: Any, handler: Any) -> None:
        """Serve one entry: handle an RPC or action, provide a topic, run a task — what
        `@handles(target)` does. The service's binder for that kind checks it (raising
        PluginError when it cannot be served here) and serves it from the plugin's start."""
        pending = [(target, handler)]
        while pending:
            target, handler = pending.pop()
            binder = next((b for b in self._binders if isinstance(target, b.claims)), None)
            if binder is None:
                where = next((text for kind, text in _SERVED_ON.items()
                              if isinstance(target, kind)), None)
                name = getattr(target, "qualname", type(target).__name__)
                raise PluginError(f"{name}: {where}, not the {self.service}" if where else
                                  f"the {self.service} does not serve {name}")
            pending.extend(binder.add(target, handler))

    def serve_task(self, task: Task[Any, Any], handler: Callable[[Any], Any]) -> None:
        """Run `task` with `handler` on this worker (what `@handles(task)` does)."""
        self.serve(task, handler)

    def declared_permissions(self) -> dict[str, str]:
        """Every permission there is on this service, by address: the platform's and every
        discovered plugin's (an uploaded plugin's too, once installed)."""
        return self._facilities.declared_permissions()

    def add_admin_routes(self, router: Any, *, permission: str | None = None) -> None:
        """Mount a FastAPI APIRouter in the admin API under /api/v1/plugins/<plugin>/admin
        (Peek's addAdminResource); removed on stop. Its routes need a signed-in caller with
        `permission` (default: the platform's mesh/admin/operate)."""
        if permission is not None:
            from mesh.permissions import check_address

            check_address(permission)
        self.serve(AdminRoutes(permission), router)

    def serve_default_action(self, processor: Callable[[Any], Awaitable[Any]]) -> None:
        """Process every action of this plugin's contract that has no processor of its own."""
        self.serve(DefaultAction(), processor)

    async def notify(self, topic: Topic[Any, Any], selector: BaseModel | None = None) -> None:
        """Tell the watchers of `selector` (or of every selector of `topic`) that its data
        changed: the provider runs once per watched selector and the new payload is published.
        Returns once the refresh is queued; the runs follow in the background, a few at a time
        (MESH_NOTIFY_CONCURRENCY), so a change never waits for every watcher's provider. In the
        processor of an action pushed with an id, the refresh is queued once the action's
        effect commits (mesh/storage/held.py), after the processor returns."""
        if topic.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot notify {topic.qualname}: it is "
                              f"{topic.plugin}'s topic; ask {topic.plugin}'s API to")
        from mesh.observable.binder import TopicBinder

        binder = next((b for b in self._binders if isinstance(b, TopicBinder)), None)
        if binder is None or topic.name not in binder.providers:
            raise PluginError(f"{topic.qualname} has no provider on this {self.service}")
        held = held_transaction()  # an action's processor: told once its effect commits
        if held is None or not held.defer(lambda: binder.notify(topic, selector)):
            await binder.notify(topic, selector)

    async def send_notification(self, template: Notification[PayT], payload: PayT, *,
                                to: Recipients) -> NotificationSent:
        """Send one of this plugin's notification templates to `to` (users, roles, the
        group's followers): stored by the server, shown live on their signed-in devices and on
        the others when they reconnect. Returns once stored."""
        from contracts.notifications import NotificationsContract, SendNotification

        if template.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot send {template.qualname}: it is "
                              f"{template.plugin}'s notification")
        if not isinstance(payload, template.payload):
            raise TypeError(f"{template.qualname}'s payload is a {template.payload.__name__}, "
                            f"not a {type(payload).__name__}")
        return await NotificationsContract(self._facilities.caller).send_notification(
            SendNotification(template=template.qualname, payload=payload.model_dump(mode="json"),
                             to=to, sent_by=f"{self.service}/{self.plugin}"))

    async def personal_settings(self, user: str) -> Any:
        """`user`'s effective personal settings of this plugin (their own values over the
        model's defaults), asked of the server: the contract's personal settings model."""
        from contracts.notifications import NotificationsContract, PersonalQuery

        contract = self._facilities.contract_of(self.plugin)
        model = contract.personal_settings_model if contract is not None else None
        if model is None:
            raise PluginError(f"{self.plugin}'s contract declares no personal settings")
        reply = await NotificationsContract(self._facilities.caller).personal_settings(
            PersonalQuery(user=user, plugin=self.plugin))
        return model.model_validate(reply.values)

    def add_notification_channel(self, channel: NotificationChannel) -> None:
        """Deliver every notification stored from now on through `channel` too, while the
        plugin runs (server; docs/plugin-guide.md, "Delivery channels")."""
        self.serve(channel, channel)

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
        api = self._facilities.published_api(plugin)
        if api is None:
            raise PluginError(f"{plugin} has published no API on the {self.service}")
        if not isinstance(api, kind):
            raise PluginError(f"{plugin}'s API is {type(api).__name__}, not a {kind.__name__}")
        return cast(ApiT, api)

    @property
    def settings(self) -> Any:
        """The plugin's current settings (its contract's settings model), or None."""
        return self._facilities.settings_for(self.plugin)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """An async SQLAlchemy session on the plugin's database (server and worker only)."""
        database = self._facilities.database
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
        self.background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
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
