"""Step 2: a part on every service, each run by its service."""

from __future__ import annotations

from mesh.plugin.host import PluginState


async def test_every_service_runs_its_part(tutorial_mesh) -> None:
    kinds = ("server", "client", "agent", "worker")
    await tutorial_mesh.start(*kinds)
    for kind in kinds:
        record = tutorial_mesh.services[kind].host.records["tutorial"]
        assert record.state is PluginState.STARTED, (kind, record.error)
        assert type(record.part).__name__ == f"Tutorial{kind.capitalize()}"
