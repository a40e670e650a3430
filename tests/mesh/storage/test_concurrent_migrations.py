"""Several servers starting at once against one empty PostgreSQL database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mesh.plugin.discovery import discover
from mesh.testing.backends import fresh_postgres_database
from tests.conftest import Bus
from tests.processes import MeshProcess, fixture_plugins_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]


async def test_four_servers_at_once_exactly_one_migrates(
    rabbit_bus: Bus, mesh_postgres_admin_url: str, tmp_path: Path
) -> None:
    # slow_migration sleeps 3 s inside its migration, so the servers meet at the lock
    with_storage = {s.name for s in discover() if s.manifest and s.manifest.storage}
    with_storage |= {"slow_migration", "mesh"}  # "mesh": the platform's own schema
    async with fresh_postgres_database(mesh_postgres_admin_url) as url:
        env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
               "MESH_DATABASE_URL": url,
               **fixture_plugins_env(tmp_path / "site", "slow_migration")}
        servers = [MeshProcess(["run", "server"], tmp_path, f"server{i}", env) for i in range(4)]
        try:
            await asyncio.gather(*(asyncio.to_thread(s.wait_for_event, "service.started", 60)
                                   for s in servers))
            events = {s.name: s.events() for s in servers}
            migrated = {name: {e["plugin"] for e in evs if e.get("event") == "db.migrated"}
                        for name, evs in events.items()}
            migrators = [name for name, plugins in migrated.items() if plugins]
            assert len(migrators) == 1, migrated
            assert migrated[migrators[0]] == with_storage
            for name, evs in events.items():
                kinds = {e.get("event") for e in evs}
                assert not kinds & {"db.migration_failed", "db.refused", "plugin.failed"}, name
                if name != migrators[0]:
                    assert "db.already_migrated" in kinds, name  # waited, then nothing to do
                started = next(e for e in evs if e.get("event") == "service.started")
                assert all(state == "started" for state in started["plugins"].values()), started
        finally:
            for server in servers:
                server.stop()
