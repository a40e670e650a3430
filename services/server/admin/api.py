"""The admin REST API under /api/v1: every route but sign-in needs a bearer token and the
platform permission it declares (mesh/admin/view to read, /operate to change, /call to
invoke RPCs)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from contracts.platform import PluginLogLevel, PluginStatus
from mesh import audit
from mesh.asyncapi import build_asyncapi
from mesh.catalog import Catalog, CatalogHook, build_catalog
from mesh.contract import Rpc, Task
from mesh.errors import (
    Forbidden,
    InvalidRequest,
    PluginError,
    RpcError,
    TaskError,
    TaskResultTimeout,
    TaskUnavailable,
    Throttled,
    Unauthenticated,
    Unavailable,
)
from mesh.identity import Identity
from mesh.log import log_levels, set_plugin_level
from mesh.names import log_level_key
from mesh.permissions import ADMIN_CALL, ADMIN_OPERATE, ADMIN_VIEW
from mesh.plugin.discovery import PluginSource
from mesh.plugin.hooks import describe, hook_digest, plan_hooks
from mesh.plugin.upload import InstallFailed, UploadError, WheelRejected
from mesh.tasks.ledger import TASK_ID, UNKNOWN, TaskRecord
from mesh.validation import field_errors

if TYPE_CHECKING:
    from services.server import ServerService

from services.server.admin.auth import AdminAuth, forbidden
from services.server.admin.strict import as_declared
from services.server.errors import LifecycleRefused, UploadFailed
from services.server.lifecycle import Impact

PREFIX = "/api/v1"
UPLOAD_PATH = f"{PREFIX}/plugins"  # POST: a wheel, up to MESH_UPLOAD_MAX_BYTES


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ServiceView(BaseModel):
    service: str
    instance: str
    host: str
    pid: int
    started_at: datetime
    uptime_s: float
    status: str = Field(description="up, or gone when its heartbeats stopped")
    last_seen_s: float = Field(description="Seconds since its last heartbeat arrived.")
    transport: str
    plugins: list[PluginStatus]


class InstanceState(BaseModel):
    service: str
    instance: str
    state: str
    error: str | None


class MigrationView(BaseModel):
    plugin: str
    schema_name: str
    current: list[str]
    heads: list[str]
    pending: list[str]
    state: str
    error: str | None


class PluginView(BaseModel):
    name: str
    title: str | None
    version: str | None
    description: str
    services: list[str]
    depends: dict[str, str]
    enabled: bool = Field(description="False when configuration or an administrator disabled it.")
    status: str = Field(description="ok, disabled, or refused (reason says why)")
    reason: str | None
    has_settings: bool
    instances: list[InstanceState]
    migration: MigrationView | None


class HookView(CatalogHook):
    """One hook on one entry as the catalog lists it, and whether it is granted."""

    granted: bool


class HookGrantView(BaseModel):
    plugin: str
    digest: str = Field(description="The fingerprint of the plugin's [[hooks]] now.")
    granted: bool = Field(description="An administrator granted these hooks, as they are.")
    outdated: bool = Field(description="Granted once, but the hooks changed since (an "
                           "upgrade): they do not run until granted again.")
    hooks: list[dict[str, Any]] = Field(description="The [[hooks]] tables, as declared.")


class HooksView(BaseModel):
    plugins: list[HookGrantView]
    entries: list[HookView]


class SettingsView(BaseModel):
    plugin: str
    values: dict[str, Any]
    json_schema: dict[str, Any]


class UploadResult(BaseModel):
    plugin: str
    distribution: str
    version: str
    previous_version: str | None = Field(description="Set when the upload was an upgrade.")
    services: list[str]


class UninstallResult(BaseModel):
    plugin: str
    version: str
    purged: bool = Field(description="Its schema was dropped and its settings forgotten.")


class RollbackResult(BaseModel):
    plugin: str
    version: str = Field(description="The version that runs now.")
    replaced_version: str
    schema_revision: str | None = Field(description="The revision its schema was moved "
                                        "down to (base: none), or null without storage.")


class TaskQueued(BaseModel):
    task: str
    task_id: str = Field(description="Read its state with GET /api/v1/tasks/{task_id}.")
    state: str = Field(description="queued (not finished: with `wait`, not within it), or "
                       "succeeded when waited for")
    result: Any = Field(default=None, description="Its result, when waited for.")


class LogLevelRequest(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        description="Log the plugin's events from this level up; null: the level the services "
        "were configured with (MESH_PLUGIN_LOG_LEVELS, else MESH_LOG_LEVEL) again. Kept "
        "across restarts.")


class LoggingView(BaseModel):
    level: str = Field(description="This server's level (MESH_LOG_LEVEL).")
    plugins: dict[str, str] = Field(description="Plugins with a level of their own.")


class SwitchResult(BaseModel):
    changed: list[str] = Field(description="The plugins switched, dependents first.")
    enabled: bool


# HTTP statuses for the RPC error codes an invoke can end in (declared plugin errors: 409)
RPC_STATUS = {
    "invalid_request": 422, "bad_message": 400, "not_allowed": 403, "unknown_rpc": 404,
    "timeout": 504, "unavailable": 503, "internal": 502, "invalid_reply": 502,
}

class SignInRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000, repr=False)
    lifetime_s: float | None = Field(default=None, gt=0, le=366 * 24 * 3600,
                                     allow_inf_nan=False,
                                     description="A shorter session than the provider's own.")


class SessionView(BaseModel):
    token: str = Field(description="Send it as `Authorization: Bearer <token>`.")
    identity: Identity


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or a wrong bearer token"},
    403: {"model": ErrorBody, "description": "Signed in, but without the permission this "
          "route needs (details.permission names it)"},
    404: {"model": ErrorBody, "description": "No such plugin"},
}


def error(code: int, kind: str, message: str, details: Any = None,
          headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(code, ErrorBody(code=kind, message=message, details=details)
                         .model_dump(), headers=headers)


def create_api(server: ServerService, auth: AdminAuth) -> APIRouter:
    api = APIRouter(prefix=PREFIX, responses=ERRORS)
    view = [Depends(auth.require(ADMIN_VIEW))]
    operate = [Depends(auth.require(ADMIN_OPERATE))]
    operator = Depends(auth.require(ADMIN_OPERATE))  # the same, naming who changed something

    @api.post("/sign-in", response_model=SessionView, tags=["identity"],
              responses={401: {"model": ErrorBody, "description": "Wrong username or password"},
                         429: {"model": ErrorBody, "description": "Too many attempts for "
                               "this address and username, too many sign-ins at once "
                               "(`throttled`), or the user is locked by the identity provider "
                               "(`locked`); Retry-After says how long"},
                         503: {"model": ErrorBody, "description": "No identity provider runs"}})
    async def sign_in(body: SignInRequest, request: Request) -> SessionView:
        """Sign in with a username and password: a session token for the other routes."""
        try:
            session = await server.identity.sign_in(
                body.username, body.password, lifetime=body.lifetime_s, where="admin",
                address=request.client.host if request.client else None)
        except Throttled as exc:
            await asyncio.sleep(exc.hold_s)
            details = exc.details or {}
            raise error(429, "throttled", exc.message, details, headers={
                "Retry-After": str(details.get("retry_after_s", 1))}) from None
        except Unauthenticated as exc:
            details = exc.details or {}
            if details.get("reason") == "locked":
                raise error(429, "locked", exc.message, details, headers={
                    "Retry-After": str(details.get("retry_after_s", 1))}) from None
            raise error(401, "unauthenticated", exc.message) from None
        except Unavailable as exc:
            raise error(503, "unavailable", exc.message) from None
        return SessionView(token=session.token, identity=session.identity)

    @api.post("/sign-out", status_code=204, tags=["identity"])
    async def sign_out(request: Request, identity: Identity = Depends(auth.who)  # noqa: B008
                       ) -> None:
        """Revoke the bearer token (the admin token itself cannot be signed out)."""
        header = request.headers.get("authorization", "")
        await server.identity.sign_out(header.partition(" ")[2].strip(), where="admin")

    @api.get("/me", response_model=Identity, tags=["identity"])
    async def me(identity: Identity = Depends(auth.who)) -> Identity:  # noqa: B008
        """Who the bearer token is, and the permissions it holds."""
        return identity

    def known(name: str) -> PluginSource:
        source = server.plugins.source(name)
        if source is None:
            raise error(404, "unknown_plugin", f"no plugin {name!r} is installed")
        return source

    async def dependents(name: str) -> list[str]:
        """Enabled plugins that need `name`, directly or not, dependents of dependents first."""
        plugins = server.plugins
        off = await server.store.disabled()  # the record; hosts catch up over the bus
        needed, order = {name}, []
        for other in plugins.order:
            if other not in off and needed & set(plugins.manifests[other].depends):
                needed.add(other)
                order.append(other)
        return order[::-1]

    @api.get("/services",
              dependencies=view, response_model=list[ServiceView], tags=["services"])
    async def list_services() -> list[ServiceView]:
        """Every service instance heard from, with its plugins; silent ones show as gone."""
        return [ServiceView(**beat.model_dump(exclude={"interval_s", "mesh_version", "state"}),
                            status=state, last_seen_s=round(age, 3))
                for beat, state, age in server.directory.instances()]

    async def plugin_view(name: str, migrations: dict[str, Any], off: set[str]) -> PluginView:
        source = known(name)
        manifest = source.manifest
        plan = server.plugins.plan
        disabled = name in plan.disabled or name in off
        instances = [
            InstanceState(service=beat.service, instance=beat.instance, state=p.state,
                          error=p.error)
            for beat, alive, _ in server.directory.instances() if alive == "up"
            for p in beat.plugins if p.name == name
        ]
        contract = server.host.contract(name)
        migration = migrations.get(name)
        return PluginView(
            name=name, title=manifest.title if manifest else None,
            version=manifest.version if manifest else None,
            description=manifest.description if manifest else "",
            services=sorted(manifest.services) if manifest else [],
            depends=dict(manifest.depends) if manifest else {},
            enabled=not disabled,
            status="disabled" if disabled else "refused" if name in plan.refused else "ok",
            reason=plan.refused.get(name) or source.error,
            has_settings=bool(contract and contract.settings_model),
            instances=instances,
            migration=MigrationView(**migration) if migration else None,
        )

    async def migrations() -> dict[str, Any]:
        statuses = await server.migrator().status()
        return {s.plugin: {"schema_name": s.schema, **{k: v for k, v in vars(s).items()
                                                       if k != "schema"}} for s in statuses}

    @api.get("/plugins",
              dependencies=view, response_model=list[PluginView], tags=["plugins"])
    async def list_plugins() -> list[PluginView]:
        """Every discovered plugin: manifest, state on each instance, migration, last error."""
        states, off = await migrations(), await server.store.disabled()
        return [await plugin_view(name, states, off) for name in server.plugins.sources]

    @api.get("/plugins/{name}",
              dependencies=view, response_model=PluginView, tags=["plugins"])
    async def get_plugin(name: str) -> PluginView:
        return await plugin_view(name, await migrations(), await server.store.disabled())

    @api.post("/plugins/{name}/disable", response_model=SwitchResult, tags=["plugins"],
              responses={409: {"model": ErrorBody,
                               "description": "Others depend on it (details lists them), or "
                               "it (or a dependent) is the identity provider"}})
    async def disable(name: str, cascade: bool = Query(False, description=(
            "Disable the plugins that depend on it too.")),
                      identity: Identity = operator) -> SwitchResult:
        """Stop the plugin on every service, now and after restarts."""
        known(name)
        needing = await dependents(name)
        provider = server.settings.identity_provider
        if provider in (name, *needing):
            raise error(409, "identity_provider", f"{provider} is the identity provider "
                        "(MESH_IDENTITY_PROVIDER): without it no one could sign in; choose "
                        "another provider first")
        if needing and not cascade:
            raise error(409, "has_dependents",
                        f"{', '.join(needing)} depend on {name}: disable them first, or "
                        "pass cascade=true", details={"dependents": needing})
        changed = [*needing, name]
        await server.set_enabled(changed, False, by=identity.user)
        return SwitchResult(changed=changed, enabled=False)

    @api.post("/plugins/{name}/enable", response_model=SwitchResult, tags=["plugins"],
              responses={409: {"model": ErrorBody, "description": "It cannot run"}})
    async def enable(name: str, identity: Identity = operator) -> SwitchResult:
        """Start the plugin on every service that runs it, now and after restarts."""
        known(name)
        plan = server.plugins.plan
        if name in plan.disabled:
            raise error(409, "disabled_by_configuration",
                        f"{name} is disabled by configuration (MESH_DISABLED_PLUGINS)")
        if name in plan.refused:
            raise error(409, "refused", f"{name} cannot run: {plan.refused[name]}")
        disabled = await server.store.disabled()
        off = [d for d in server.plugins.manifests[name].depends if d in disabled]
        if off:
            raise error(409, "dependency_disabled",
                        f"{name} needs {', '.join(off)}, which an administrator disabled: "
                        "enable that first", details={"disabled": off})
        await server.set_enabled([name], True, by=identity.user)
        return SwitchResult(changed=[name], enabled=True)

    @api.get("/logging", dependencies=view, response_model=LoggingView, tags=["logging"])
    async def logging_levels() -> LoggingView:
        """The log level, and each plugin's own, as this server applies them (every service
        applies the same changes: they are sent to all)."""
        return LoggingView(**log_levels())

    @api.put("/plugins/{name}/log-level", response_model=LoggingView, tags=["logging"],
             responses={422: {"model": ErrorBody, "description": "Not a level"}})
    async def put_log_level(name: str, body: LogLevelRequest,
                            identity: Identity = operator) -> LoggingView:
        """Change the plugin's log level on every service at once; the server keeps it, so
        it lasts across restarts (null: the level the services were configured with again)."""
        known(name)
        await server.store.set_log_level(name, body.level, by=identity.user)
        set_plugin_level(name, body.level)
        await server.control.publish(log_level_key(name), PluginLogLevel(
            plugin=name, level=body.level, by=identity.user))
        audit.plugin_changed(who=identity.user, action="log_level", plugin=name, outcome="ok",
                             level=body.level)
        return LoggingView(**log_levels())

    def settings_model(name: str) -> type[BaseModel]:
        known(name)
        contract = server.host.contract(name)
        if contract is None or contract.settings_model is None:
            raise error(404, "no_settings", f"{name} declares no settings")
        return contract.settings_model

    @api.get("/plugins/{name}/settings",
              dependencies=view, response_model=SettingsView, tags=["settings"])
    async def get_settings(name: str) -> SettingsView:
        """The plugin's settings and their JSON Schema (for a form)."""
        model = settings_model(name)
        stored = (await server.store.settings()).get(name, {})
        values = model.model_validate(stored).model_dump(mode="json")
        return SettingsView(plugin=name, values=values, json_schema=model.model_json_schema())

    @api.put("/plugins/{name}/settings", response_model=SettingsView, tags=["settings"],
             responses={422: {"model": ErrorBody, "description": "Field errors"}})
    async def put_settings(name: str, values: dict[str, Any] = Body(...),  # noqa: B008
                           identity: Identity = operator) -> SettingsView:
        """Validate, store and push new settings to every service running the plugin."""
        model = settings_model(name)
        try:
            settings = await server.set_settings(name, values, by=identity.user)
        except ValidationError as exc:
            raise error(422, "invalid_settings", f"the settings do not match {model.__name__}",
                        field_errors(exc)) from None
        except PluginError as exc:
            raise error(404, "no_settings", str(exc)) from None
        return SettingsView(plugin=name, values=settings.model_dump(mode="json"),
                            json_schema=model.model_json_schema())

    @api.post("/plugins",
              dependencies=operate, response_model=UploadResult, status_code=201, tags=["plugins"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string",
                                                          "format": "binary"}}}}},
              responses={409: {"model": ErrorBody, "description": "Installed, but it could "
                               "not migrate or start, or its contract breaks the installed "
                               "version's callers (breaks_callers, details.breaks): undone"},
                         413: {"model": ErrorBody, "description": "Over the size limit"},
                         422: {"model": ErrorBody, "description": "Not an acceptable wheel"}})
    async def upload(request: Request, filename: str = Query(
            ...,
            description="The wheel's file name, e.g. mesh_x-1.0.0-py3-none-any.whl"),
                     allow_breaking: bool = Query(False, description=(
                         "Install an upgrade whose contract breaks the installed version's "
                         "callers (an entry removed, a model changed incompatibly).")),
                     identity: Identity = operator) -> UploadResult:
        """Install a plugin wheel (the request body), migrate it and start it on every
        service that runs it. Validated before anything is installed; a failure leaves the
        system as it was."""
        limit = server.settings.upload_max_bytes
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise error(413, "too_large", f"uploads are at most {limit} bytes")
        try:
            installed = await server.install_plugin(bytes(body), filename, by=identity.user,
                                                    allow_breaking=allow_breaking)
        except WheelRejected as exc:
            raise error(413 if exc.code == "too_large" else 422, exc.code, exc.message) from None
        except UploadFailed as exc:
            raise error(409, exc.code, exc.message, exc.details) from None
        except InstallFailed as exc:
            raise error(500, exc.code, exc.message, {"restored": exc.restored}) from None
        info = installed.info
        return UploadResult(plugin=info.plugin, distribution=str(info.distribution),
                            version=info.version, previous_version=info.installed_version,
                            services=sorted(info.manifest.services))

    lifecycle_errors: dict[int | str, dict[str, Any]] = {
        409: {"model": ErrorBody, "description": "Refused (not uploaded, has dependents, "
              "nothing to roll back to, purge without confirm), or failed and undone"},
        422: {"model": ErrorBody, "description": "A bad version"},
        500: {"model": ErrorBody, "description": "Failed half way and not wholly undone "
              "(details.restored)"}}

    def lifecycle_error(exc: UploadError) -> HTTPException:
        if isinstance(exc, LifecycleRefused):
            code = {"unknown_plugin": 404, "bad_version": 422}.get(
                exc.code, 409)
            return error(code, exc.code, exc.message, exc.details)
        restored = getattr(exc, "restored", True)
        return error(409 if restored else 500, exc.code, exc.message, {"restored": restored})

    @api.get("/plugins/{name}/impact", dependencies=view, response_model=Impact,
             tags=["plugins"])
    async def impact(name: str) -> Impact:
        """What uninstalling the plugin would do: who depends on it, its schema (kept unless
        purged), its settings, the versions kept for a rollback, and what stands in the way."""
        try:
            return await server.lifecycle.impact(name)
        except LifecycleRefused as exc:
            raise lifecycle_error(exc) from None

    @api.post("/plugins/{name}/uninstall", response_model=UninstallResult, tags=["plugins"],
              responses=lifecycle_errors)
    async def uninstall(name: str, identity: Identity = operator,
                        purge: bool = Query(False, description=(
                            "Drop its schema (all its data) and forget its settings.")),
                        confirm: str | None = Query(None, description=(
                            "With purge=true: the plugin's name again, to say it is meant."))
                        ) -> UninstallResult:
        """Stop an uploaded plugin on every service and take it out of every environment.
        Its data stays (schema, settings) unless purge=true with confirm=<name>; its wheels
        stay, so it can be uploaded again. Refused while other plugins need it."""
        if purge and confirm != name:  # 409: the request is well formed, but not meant
            raise error(409, "confirm_purge", f"purge drops the schema of {name} and all its "
                        f"data: pass confirm={name} to say so")
        try:
            done = await server.lifecycle.uninstall(name, purge=purge, by=identity.user)
        except UploadError as exc:
            raise lifecycle_error(exc) from None
        return UninstallResult(plugin=done.plugin, version=done.version, purged=done.purged)

    @api.post("/plugins/{name}/rollback", response_model=RollbackResult, tags=["plugins"],
              responses=lifecycle_errors)
    async def rollback(name: str, identity: Identity = operator,
                       version: str | None = Query(None, max_length=64, description=(
                           "An older kept version; default: the newest older one."))
                       ) -> RollbackResult:
        """Go back to the version installed before: the plugin stopped everywhere, its schema
        moved down by the installed version's own scripts, the kept older wheel installed and
        started on every service. A failure half way puts this version back."""
        try:
            done = await server.lifecycle.rollback(name, by=identity.user, version=version)
        except UploadError as exc:
            raise lifecycle_error(exc) from None
        return RollbackResult(plugin=done.plugin, version=done.version,
                              replaced_version=done.previous_version,
                              schema_revision=done.schema_revision)

    def catalog() -> Catalog:
        return build_catalog(server.plugins)

    async def hooks_view() -> HooksView:
        grants = await server.store.hook_grants()
        plugins = server.plugins
        declared = [
            HookGrantView(plugin=name, digest=digest, granted=grants.get(name) == digest,
                          outdated=name in grants and grants[name] != digest,
                          hooks=[h.model_dump(mode="json", by_alias=True)
                                 for h in plugins.manifests[name].hooks])
            for name in sorted(plugins.manifests)
            if (digest := hook_digest(plugins.manifests[name])) is not None]
        rows = describe(plan_hooks(plugins), grants, plugins)
        return HooksView(plugins=declared, entries=[HookView(**row) for row in rows])

    @api.get("/hooks", dependencies=view, response_model=HooksView, tags=["hooks"])
    async def list_hooks() -> HooksView:
        """Every plugin that declares hooks, whether an administrator granted them, and each
        hooked entry's hooks in the order they run."""
        return await hooks_view()

    async def grant(name: str, granted: bool, identity: Identity) -> HooksView:
        known(name)
        try:
            await server.grant_hooks(name, granted, by=identity.user)
        except PluginError as exc:
            raise error(404, "no_hooks", str(exc)) from None
        return await hooks_view()

    @api.post("/plugins/{name}/hooks/grant", response_model=HooksView, tags=["hooks"],
              responses={404: {"model": ErrorBody, "description": "No such plugin, or it "
                               "declares no hooks"}})
    async def grant_hooks(name: str, identity: Identity = operator) -> HooksView:
        """Consent to the plugin's hooks as its manifest declares them now: they run on every
        service at once, until revoked (or until an upgrade changes them)."""
        return await grant(name, True, identity)

    @api.post("/plugins/{name}/hooks/revoke", response_model=HooksView, tags=["hooks"])
    async def revoke_hooks(name: str, identity: Identity = operator) -> HooksView:
        """Withdraw the consent: the plugin's hooks stop on every service at once."""
        return await grant(name, False, identity)

    @api.get("/contracts",
              dependencies=view, response_model=Catalog, tags=["contracts"])
    async def contracts() -> Catalog:
        """Every RPC, action and topic of the enabled plugins, with its models' JSON Schema."""
        return catalog()

    @api.get("/asyncapi.json",
              dependencies=view, tags=["contracts"])
    async def asyncapi() -> dict[str, Any]:
        """The AsyncAPI 3.0 document of the whole mesh (as `mesh contracts asyncapi`)."""
        return build_asyncapi(catalog(), broker_url=server.settings.broker_url,
                              exchange=server.settings.exchange,
                              heartbeat_interval=server.settings.heartbeat_interval)

    @api.get("/migrations",
              dependencies=view, response_model=list[MigrationView], tags=["migrations"])
    async def list_migrations() -> list[MigrationView]:
        """Each schema's revision, head and pending revisions (the platform's included)."""
        return [MigrationView(**state) for state in (await migrations()).values()]

    @api.get("/tasks/{task_id}", dependencies=view, response_model=TaskRecord, tags=["tasks"],
             responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}})
    async def get_task(task_id: str = Path(pattern=f"^{TASK_ID.pattern}$")) -> TaskRecord:
        """What the task ledger knows of a task: state, attempts, times, and its result or
        last error while kept (`mesh tasks show`). 404 when it knows nothing of it: not
        started yet, or no longer kept."""
        try:
            record = await server.ledger.read(task_id)
        except ValueError as exc:
            raise error(400, "invalid_task_id", str(exc)) from None
        if record.state == UNKNOWN:
            raise error(404, "unknown_task", f"no task {task_id} in the task ledger: not "
                        "started yet, or no longer kept")
        return record

    async def entry(plugin: str, name: str, kind: str) -> Rpc[Any, Any] | Task[Any, Any]:
        """A plugin's RPC or task by name, or 404 (unknown_plugin, unknown_rpc, unknown_task);
        409 `plugin_disabled` while it is switched off (nothing would answer)."""
        known(plugin)
        if plugin in server.plugins.plan.disabled or plugin in await server.store.disabled():
            raise error(409, "plugin_disabled", f"{plugin} is disabled")
        contract = server.host.contract(plugin)
        found = (contract.get_rpc(name) if kind == "rpc" else contract.get_task(name)
                 ) if contract else None
        if found is None:
            raise error(404, f"unknown_{kind}", f"plugin {plugin!r} has no "
                        f"{'RPC' if kind == 'rpc' else kind} {name!r}")
        return found

    @api.post("/tasks/{plugin}/{name}", tags=["tasks"], response_model=TaskQueued,
              status_code=202,
              responses={200: {"model": TaskQueued, "description": "Waited for: its result"},
                         **{code: {"model": ErrorBody} for code in (403, 404, 409, 422, 503)}})
    async def enqueue(plugin: str, name: str, http: Request,
                      task_input: dict[str, Any] = Body(  # noqa: B008
                          default_factory=dict, description="The task's input."),
                      wait: float | None = Query(None, gt=0, le=300, description=(
                          "Seconds to wait for its result; without it, answer once the "
                          "broker holds the task.")),
                      idempotency_key: str | None = Query(None, min_length=1, max_length=200),
                      identity: Identity = Depends(auth.require(ADMIN_CALL)),  # noqa: B008
                      ) -> Any:
        """Queue a task declared in a plugin's contract (as `mesh tasks enqueue` does), with
        the JSON body as its input: 202 with its task id, or with `wait`, 200 with its result
        (409 with its error if it failed for good; 202 if it has not finished by then)."""
        declared = await entry(plugin, name, "task")
        assert isinstance(declared, Task)
        if not declared.allows(server.kind):  # what the worker would refuse
            raise error(403, "not_allowed", f"{declared.qualname} may be enqueued only by "
                        f"{', '.join(sorted(declared.callers or ()))}, not through the admin "
                        "API", {"callers": sorted(declared.callers or ())})
        as_declared(declared.input, task_input, "invalid_input")
        try:
            identity.require(declared.permission, declared.qualname)
        except Forbidden as exc:
            raise forbidden(identity, exc, declared.qualname, http) from None
        try:  # for the signed-in person: the worker checks their session and permission
            handle = await server.enqueuer.enqueue(declared, task_input,
                                                   idempotency_key=idempotency_key,
                                                   user=identity.user,
                                                   session=http.state.session)
        except InvalidRequest as exc:
            raise error(422, "invalid_input", exc.message, exc.details) from None
        except TaskUnavailable as exc:
            raise error(503, "unavailable", str(exc)) from None
        audit.task_enqueued(who=identity.user, task=declared.qualname, task_id=handle.task_id,
                            where="admin")
        queued = TaskQueued(task=declared.qualname, task_id=handle.task_id, state="queued")
        if wait is None:
            return queued
        try:
            result = await handle.result(timeout=wait)
        except TaskResultTimeout:
            return JSONResponse(queued.model_dump(mode="json"), status_code=202)
        except TaskError as exc:
            raise error(409, exc.code, exc.message, exc.to_wire()) from None
        return JSONResponse(queued.model_copy(update={
            "state": "succeeded", "result": result.model_dump(mode="json")}).model_dump(
                mode="json"), status_code=200)

    @api.post("/rpc/{plugin}/{name}", tags=["rpc"],
              responses={code: {"model": ErrorBody} for code in (400, 403, 409, 422, 502, 503,
                                                                  504)})
    async def invoke(plugin: str, name: str, http: Request,
                     request: dict[str, Any] = Body(default_factory=dict),  # noqa: B008
                     identity: Identity = Depends(auth.require(ADMIN_CALL)),  # noqa: B008
                     ) -> Any:
        """Call an RPC as the command line does ("cli"), on the signed-in user's behalf: the
        reply, or its typed error. The RPC's own permission is needed too."""
        rpc = await entry(plugin, name, "rpc")
        assert isinstance(rpc, Rpc)
        as_declared(rpc.request, request, "invalid_request")
        if not rpc.allows("cli"):  # what the serving side (and the broker ACL) would refuse
            raise error(403, "not_allowed", f"{rpc.qualname} may be called only by "
                        f"{', '.join(sorted(rpc.callers or ()))}, not through the admin API",
                        {"callers": sorted(rpc.callers or ())})
        try:
            identity.require(rpc.permission, rpc.qualname)
        except Forbidden as exc:
            raise forbidden(identity, exc, rpc.qualname, http) from None
        try:
            reply = await server.rpc_caller.call(rpc, request, caller="cli", user=identity.user,
                                                 session=http.state.session)
        except RpcError as exc:
            code = RPC_STATUS.get(exc.code, status.HTTP_409_CONFLICT)
            return JSONResponse(exc.to_wire(), status_code=code)
        return reply.model_dump(mode="json")

    return api
