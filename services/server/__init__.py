"""The server: the mesh's centre, where plugins keep their state and logic.

Before it starts any plugin it brings every plugin's database schema to head.
"""

from __future__ import annotations

from typing import Any

from mesh.observable.provider import ObservableServer
from mesh.plugin.host import PluginState
from mesh.service import Service
from mesh.storage.migrations import Migrator


class ServerService(Service):
    kind = "server"
    uses_database = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observables = ObservableServer(self.transport, self.instance)
        self.host.observables = self.observables

    async def prepare(self) -> None:
        await self.observables.start()
        assert self.database is not None
        migrator = Migrator.for_sources(
            self.database, self.sources, self.host.plan.order,
            heads_cache=self.settings.data_dir / "migration-heads.json",
        )
        result = await migrator.upgrade_all()
        for name, error in result.failed.items():
            self.host.mark(name, PluginState.FAILED, error)
        for name, error in result.refused.items():
            self.host.mark(name, PluginState.REFUSED, error)
        for schema in await migrator.orphans():
            self.log.warning("db.orphan_schema", schema=schema,
                             hint="no installed plugin owns it; mesh leaves it alone")
